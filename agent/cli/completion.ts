import type { Command } from 'commander';
import { ModeldError } from '../errors.js';
import { exitCodesHelp } from './exit-codes.js';

// `modeld completion bash|zsh`: a completion script made from the commands and options
// registered here (so it never lists a command that is gone), completing model names from
// `modeld get -o name` (the default namespace's without their `default/`), files after -f, -c
// and for seed's archive, and the -o formats. Install as kubectl's is installed:
//   bash: source <(modeld completion bash)     or save it in /etc/bash_completion.d/modeld
//   zsh:  source <(modeld completion zsh)      or save it as _modeld in a directory of $fpath

interface CommandInfo {
  name: string;
  about: string;
  options: string[];
  /** What its first argument is: a model, a file, a subcommand or shell name, or nothing. */
  arg?: { kind: 'model' | 'file' | 'words'; words?: string[] };
}

function describe(program: Command): { commands: CommandInfo[]; global: string[] } {
  const flags = (c: Command) => c.options.flatMap((o) => [o.short, o.long].filter((f): f is string => !!f)).concat('--help');
  const commands = program.commands.map((c): CommandInfo => {
    const first = c.registeredArguments[0]?.name();
    const arg =
      first === 'model' ? ({ kind: 'model' } as const)
      : first === 'archive' ? ({ kind: 'file' } as const)
      : first === 'shell' ? { kind: 'words' as const, words: ['bash', 'zsh'] }
      : c.commands.length ? { kind: 'words' as const, words: c.commands.map((s) => s.name()) }
      : undefined;
    const options = [...flags(c), ...c.commands.flatMap(flags)];
    return { name: c.name(), about: c.description(), options: [...new Set(options)], arg };
  });
  return { commands, global: flags(program).concat('-V') };
}

const FILE_OPTS = '-f|--filename|-c|--config|--edgecore';
const FORMATS = 'json yaml wide name';

function bash(program: Command): string {
  const { commands, global } = describe(program);
  const cases = commands
    .map((c) => {
      const arg = c.arg?.kind === 'model' ? 'models=1' : c.arg?.kind === 'file' ? 'files=1' : c.arg?.words ? `words="${c.arg.words.join(' ')}"` : ':';
      return `    ${c.name}) opts="${c.options.join(' ')}"; ${arg} ;;`;
    })
    .join('\n');
  return `# bash completion for modeld (made by \`modeld completion bash\`)
_modeld() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}"
  local cmd="" cfg=() i opts="" words="" models=0 files=0 args=0
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "\${COMP_WORDS[i]}" in
      -c|--config) cfg=(--config "\${COMP_WORDS[i+1]}"); ((i++)) ;;
      -*) ;;
      *) if [[ -z $cmd ]]; then cmd="\${COMP_WORDS[i]}"; else ((args++)); fi ;;
    esac
  done
  case "$prev" in
    ${FILE_OPTS}) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    -o|--output) COMPREPLY=($(compgen -W "${FORMATS}" -- "$cur")); return ;;
  esac
  if [[ -z $cmd ]]; then
    COMPREPLY=($(compgen -W "${commands.map((c) => c.name).join(' ')} ${global.join(' ')}" -- "$cur"))
    return
  fi
  case "$cmd" in
${cases}
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  elif ((args == 0)) && [[ -n $words ]]; then
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
  elif ((args == 0 && models)); then
    COMPREPLY=($(compgen -W "$(modeld "\${cfg[@]}" get -o name 2>/dev/null | sed 's#^default/##')" -- "$cur"))
  elif ((args == 0 && files)); then
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}
complete -F _modeld modeld
`;
}

function zsh(program: Command): string {
  const { commands, global } = describe(program);
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const cases = commands
    .map((c) => {
      // zsh's own \$words holds the command line: the choices get another name.
      const arg = c.arg?.kind === 'model' ? 'models=1' : c.arg?.kind === 'file' ? 'files=1' : c.arg?.words ? `choices=(${c.arg.words.join(' ')})` : ':';
      return `    ${c.name}) opts=(${c.options.join(' ')}); ${arg} ;;`;
    })
    .join('\n');
  return `#compdef modeld
# zsh completion for modeld (made by \`modeld completion zsh\`)
_modeld() {
  local -a commands opts cfg
  local cmd="" i models=0 files=0 args=0
  commands=(
${commands.map((c) => `    ${q(`${c.name}:${c.about.replace(/:/g, '\\:')}`)}`).join('\n')}
  )
  for ((i = 2; i < CURRENT; i++)); do
    case "\${words[i]}" in
      -c|--config) cfg=(--config "\${words[i+1]}"); ((i++)) ;;
      -*) ;;
      *) if [[ -z $cmd ]]; then cmd="\${words[i]}"; else ((args++)); fi ;;
    esac
  done
  case "\${words[CURRENT-1]}" in
    ${FILE_OPTS}) _files; return ;;
    -o|--output) compadd -- ${FORMATS}; return ;;
  esac
  if [[ -z $cmd ]]; then
    if [[ $PREFIX == -* ]]; then compadd -- ${global.join(' ')}; else _describe -t commands 'modeld command' commands; fi
    return
  fi
  local -a choices
  case "$cmd" in
${cases}
  esac
  if [[ $PREFIX == -* ]]; then
    compadd -- $opts
  elif ((args == 0 && \${#choices})); then
    compadd -- $choices
  elif ((args == 0 && models)); then
    compadd -- \${(f)"$(modeld $cfg get -o name 2>/dev/null | sed 's#^default/##')"}
  elif ((args == 0 && files)); then
    _files
  fi
}
if (( $+functions[compdef] )); then compdef _modeld modeld; fi
`;
}

export function registerCompletion(program: Command): void {
  program
    .command('completion')
    .description('print a shell completion script: `source <(modeld completion bash)` (or zsh)')
    .argument('<shell>', 'bash or zsh')
    .addHelpText('after', exitCodesHelp('completion'))
    .action((shell: string) => {
      if (shell === 'bash') return void process.stdout.write(bash(program));
      if (shell === 'zsh') return void process.stdout.write(zsh(program));
      throw new ModeldError('BadRequest', `completion for ${JSON.stringify(shell.slice(0, 20))}: the shells are bash and zsh`);
    });
}
