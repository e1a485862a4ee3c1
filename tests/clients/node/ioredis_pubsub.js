// Publishes and consumes through the gateway with ioredis in its default
// settings: only host, port and the credentials (`password`, or `username` +
// `password`) are given. ioredis 6 connects with `HELLO 3 AUTH <user|default>
// <password>`, ioredis 5 with `AUTH [<user>] <password>`; both then send
// `CLIENT SETINFO` twice and their ready check, `INFO`.
//
// Usage: node ioredis_pubsub.js PORT PUB_DSN SUB_DSN [ioredis|ioredis5]
// Prints {"published":[SET replies],"consumed":[MGET json strings],"commit":reply}.
'use strict';

const { args, records, consume, run } = require('./harness');

run(async () => {
  const a = args('ioredis');
  const Redis = a.library;
  const connect = (credentials) => new Redis({ host: a.host, port: a.port, ...credentials });

  const byPassword = connect({ password: a.pubDsn });
  const byUsername = connect({ username: a.pubUser, password: a.pubRest });
  const published = [];
  for (const [key, value, form] of records(a.pkg)) {
    published.push(await (form === 'password' ? byPassword : byUsername).set(key, value));
  }
  await Promise.all([byPassword.quit(), byUsername.quit()]);

  const sub = connect({ password: a.subDsn });
  const consumed = await consume(() => sub.mget('json'), published.length);
  const last = consumed.length ? JSON.parse(consumed[consumed.length - 1]) : null;
  const commit = last ? await sub.set(String(last.partition), String(last.offset)) : null;
  await sub.quit();
  return { published, consumed, commit };
});
