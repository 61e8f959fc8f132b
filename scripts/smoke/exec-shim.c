// Smoke test only (npm run smoke), never shipped: loaded with LD_PRELOAD into the ARM node that
// runs under qemu-user. With no binfmt_misc, the kernel cannot exec an ARM binary, so the
// runtimes the agent spawns with process.execPath (an ARM node) would fail with ENOEXEC. This
// routes an exec of an ARM ELF file through $SMOKE_QEMU (qemu-aarch64-static / qemu-arm-static,
// which takes its sysroot from $QEMU_LD_PREFIX); any other exec (a host tool like systemd-notify)
// goes through unchanged, without LD_PRELOAD (the host's loader cannot use an ARM library).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__aarch64__)
#define GUEST_MACHINE EM_AARCH64
#else
#define GUEST_MACHINE EM_ARM
#endif

extern char **environ;
typedef int (*execve_fn)(const char *, char *const[], char *const[]);

static int is_guest_elf(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  unsigned char h[20];
  ssize_t n = read(fd, h, sizeof h);
  close(fd);
  return n == (ssize_t)sizeof h && memcmp(h, ELFMAG, SELFMAG) == 0 && (h[18] | (h[19] << 8)) == GUEST_MACHINE;
}

/** envp without LD_PRELOAD (for a host program); leaks on a failed exec, which is rare and small. */
static char **without_preload(char *const envp[]) {
  int n = 0;
  while (envp[n]) n++;
  char **out = calloc(n + 1, sizeof *out);
  if (!out) return (char **)envp;
  int j = 0;
  for (int i = 0; i < n; i++)
    if (strncmp(envp[i], "LD_PRELOAD=", 11) != 0) out[j++] = envp[i];
  return out;
}

int execve(const char *path, char *const argv[], char *const envp[]) {
  execve_fn real = (execve_fn)dlsym(RTLD_NEXT, "execve");
  const char *qemu = getenv("SMOKE_QEMU");
  if (!qemu || !strchr(path, '/')) return real(path, argv, envp);
  if (!is_guest_elf(path)) return real(path, argv, without_preload(envp));
  int argc = 0;
  while (argv[argc]) argc++;
  char **args = calloc(argc + 2, sizeof *args);
  if (!args) {
    errno = ENOMEM;
    return -1;
  }
  args[0] = (char *)qemu;
  args[1] = (char *)path;
  for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
  int r = real(qemu, args, envp);
  free(args);
  return r;
}

// libuv (inside node) spawns with execvp; glibc's own execvp calls its internal execve, which
// LD_PRELOAD cannot reach, so a path with a slash is sent to the execve above.
int execvpe(const char *file, char *const argv[], char *const envp[]) {
  if (getenv("SMOKE_QEMU") && strchr(file, '/')) return execve(file, argv, envp);
  execve_fn real = (execve_fn)dlsym(RTLD_NEXT, "execvpe");
  return real(file, argv, envp);
}

int execvp(const char *file, char *const argv[]) { return execvpe(file, argv, environ); }
int execv(const char *path, char *const argv[]) { return execve(path, argv, environ); }
