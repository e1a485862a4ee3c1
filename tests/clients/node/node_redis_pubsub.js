// Publishes and consumes through the gateway with node-redis (npm `redis`) in
// its default settings: only the socket's host and port and the credentials
// (`password`, or `username` + `password`) are given. node-redis 6 speaks
// RESP3 by default and connects with `HELLO 3 AUTH <user|default> <password>`;
// node-redis 5 speaks RESP2 and sends `AUTH [<user>] <password>`. Both then
// send `CLIENT SETINFO` twice.
//
// Usage: node node_redis_pubsub.js PORT PUB_DSN SUB_DSN [redis|redis5]
// Prints {"published":[SET replies],"consumed":[MGET json strings],"commit":reply}.
'use strict';

const { args, records, consume, run } = require('./harness');

run(async () => {
  const a = args('redis');
  const connect = (credentials) =>
    a.library.createClient({ socket: { host: a.host, port: a.port }, ...credentials }).connect();

  const byPassword = await connect({ password: a.pubDsn });
  const byUsername = await connect({ username: a.pubUser, password: a.pubRest });
  const published = [];
  for (const [key, value, form] of records(a.pkg)) {
    published.push(await (form === 'password' ? byPassword : byUsername).set(key, value));
  }
  await Promise.all([byPassword.close(), byUsername.close()]);

  const sub = await connect({ password: a.subDsn });
  // `MGET json`: the typed helper takes the encoding as its one "key".
  const consumed = await consume(() => sub.mGet(['json']), published.length);
  const last = consumed.length ? JSON.parse(consumed[consumed.length - 1]) : null;
  const commit = last ? await sub.set(String(last.partition), String(last.offset)) : null;
  await sub.close();
  return { published, consumed, commit };
});
