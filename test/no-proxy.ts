// Every download in the suite is from a server on loopback. A proxy set in the environment of the
// machine running the tests (a CI runner's HTTP_PROXY) must not see them: downloads honour these
// variables (agent/fetch/dispatcher.ts), and the tests that are about proxies set their own.
for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'ALL_PROXY']) {
  delete process.env[name];
  delete process.env[name.toLowerCase()];
}
