// @platformatic/kafka scenarios (see compat/README.md for the contract):
//   node scenarios.mjs --bootstrap HOST:PORT --scenario NAME --topic T [--security FILE]
// Prints one JSON line {"result": "pass"|"fail"|"n/a", "detail": "..."}.
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import zlib from 'node:zlib'
import { Admin, ConfigResourceTypes, Consumer, FetchIsolationLevels, Producer, ProduceAcks } from '@platformatic/kafka'
import nodeSecurity from '../node-security.cjs'

const args = {}
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1]
const topic = args.topic || 'compat'
const security = nodeSecurity.readProperties(args.security)

// The client's tls and sasl options for the --security properties.
function secured () {
  const options = {}
  const tls = nodeSecurity.tlsOptions(security)
  if (tls) options.tls = tls
  const mechanism = security['sasl.mechanism']
  const username = security['sasl.username']
  if (mechanism === 'OAUTHBEARER') options.sasl = { mechanism, token: nodeSecurity.unsecuredJwt(username) }
  else if (mechanism) options.sasl = { mechanism, username, password: security['sasl.password'] }
  return options
}

const base = { clientId: 'pybroker-compat', bootstrapBrokers: [args.bootstrap || '127.0.0.1:9092'], retries: 2, ...secured() }

class NotApplicable extends Error {}
const check = (ok, message) => { if (!ok) throw new Error(message) }
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
const numbered = n => Array.from({ length: n }, (_, i) => Buffer.from(`m${i}`.repeat(20)))
const str = b => (b === null || b === undefined ? null : b.toString())
const buffers = pairs => new Map(pairs.map(([k, v]) => [Buffer.from(k), Buffer.from(v)]))
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b)

async function waitFor (predicate, ms, what) {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(100)) if (predicate()) return
  throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`)
}

async function withClient (client, fn) {
  try {
    return await fn(client)
  } finally {
    await client.close()
  }
}

// The client reads acks from send()'s options only; in the constructor's it is ignored.
const produce = (messages, { acks, ...options } = {}) =>
  withClient(new Producer({ ...base, ...options }), p =>
    p.send({ messages: messages.map(m => ({ topic, ...m })), ...(acks === undefined ? {} : { acks }) }))

// Read `count` messages through a group consumer's stream.
async function consume (count, { groupId = `${topic}-${randomUUID()}`, mode = 'earliest', offsets, isolationLevel } = {}) {
  const isolation = isolationLevel === undefined ? {} : { isolationLevel }
  return withClient(new Consumer({ ...base, groupId, maxWaitTime: 500, ...isolation }), async consumer => {
    const stream = await consumer.consume({ topics: [topic], mode, offsets, autocommit: false })
    const got = []
    const timer = setTimeout(() => stream.destroy(new Error(`got ${got.length} of ${count} messages`)), 20000)
    try {
      for await (const message of stream) {
        got.push(message)
        if (got.length === count) break
      }
    } finally {
      clearTimeout(timer)
      await stream.close()
    }
    return { got, consumer }
  })
}

async function roundTrip (options) {
  const values = numbered(20)
  await produce(values.map(value => ({ key: Buffer.from('k'), value })), options)
  const { got } = await consume(values.length)
  check(same(got.map(m => str(m.value)), values.map(str)), 'values differ')
}

const scenarios = {
  async version () {
    const url = new URL('node_modules/@platformatic/kafka/package.json', import.meta.url)
    return `${JSON.parse(readFileSync(url)).version} (node ${process.version})`
  },

  async metadata () {
    return withClient(new Admin(base), async admin => {
      const md = await admin.metadata({ topics: [topic] })
      const t = md.topics.get(topic)
      check(t && t.partitionsCount === 1, `topic metadata ${JSON.stringify(t)}`)
      return `${md.brokers.size} broker(s), topic with ${t.partitionsCount} partition(s), id ${t.id}`
    })
  },

  async roundtrip () {
    await produce([
      { key: Buffer.from('k1'), value: Buffer.from('v1'), headers: buffers([['h1', 'a'], ['h2', 'b']]) },
      { key: Buffer.from('k2'), value: null },
      { value: Buffer.from('v3'), headers: buffers([['only', 'c']]) },
    ])
    const { got } = await consume(3)
    const seen = got.map(m => [str(m.key), str(m.value), [...m.headers].map(([k, v]) => `${k}=${v}`).join(',')])
    const want = [['k1', 'v1', 'h1=a,h2=b'], ['k2', null, ''], [null, 'v3', 'only=c']]
    check(same(seen, want), `got ${JSON.stringify(seen)}`)
  },

  gzip: () => roundTrip({ compression: 'gzip' }),
  snappy: () => roundTrip({ compression: 'snappy' }),
  lz4: () => roundTrip({ compression: 'lz4' }),
  zstd: () => {
    if (!zlib.zstdCompressSync) throw new NotApplicable(`zstd needs node:zlib zstd (Node >= 22.15); this is Node ${process.version}`)
    return roundTrip({ compression: 'zstd' })
  },
  'acks-0': () => roundTrip({ acks: ProduceAcks.NO_RESPONSE }),
  'acks-1': () => roundTrip({ acks: ProduceAcks.LEADER }),
  'acks-all': () => roundTrip({ acks: ProduceAcks.ALL }),

  async 'group-resume' () {
    await produce(numbered(10).map(value => ({ value })))
    const groupId = `${topic}-group`
    const { got: first } = await consume(4, { groupId })
    await withClient(new Consumer({ ...base, groupId }), async c => {
      await c.joinGroup({})
      await c.commit({ offsets: [{ topic, partition: 0, offset: first[3].offset + 1n, leaderEpoch: -1 }] })
    })
    const { got: rest } = await consume(6, { groupId, mode: 'committed' })
    const offsets = rest.map(m => Number(m.offset))
    check(same(offsets, [4, 5, 6, 7, 8, 9]), `resumed at ${offsets}`)
  },

  async rebalance () {
    const groupId = `${topic}-group`
    const members = [0, 1].map(() => new Consumer({ ...base, groupId, maxWaitTime: 500 }))
    const owned = m => (m.assignments || []).flatMap(a => (a.topic === topic ? a.partitions : []))
    const streams = []
    try {
      streams.push(await members[0].consume({ topics: [topic], mode: 'latest' }))
      await waitFor(() => owned(members[0]).length === 2, 30000, 'first member to get both partitions')
      streams.push(await members[1].consume({ topics: [topic], mode: 'latest' }))
      await waitFor(() => owned(members[0]).length === 1 && owned(members[1]).length === 1 &&
        owned(members[0])[0] !== owned(members[1])[0], 30000, 'a split')
    } finally {
      for (const s of streams) await s.close()
      for (const m of members) await m.close()
    }
  },

  async 'offsets-by-time' () {
    const t0 = BigInt(Date.now() - 60000)
    // acks=all: in a cluster an acks=1 write may not be below the high
    // watermark yet, and offsets by time look only there (as in Kafka).
    await produce([0, 1, 2].map(i => ({ value: Buffer.from(`t${i}`), timestamp: t0 + 1000n * BigInt(i) })),
      { acks: ProduceAcks.ALL })
    const offsets = await withClient(new Consumer({ ...base, groupId: randomUUID() }),
      c => c.listOffsets({ topics: [topic], timestamp: t0 + 500n }))
    const found = offsets.get(topic)[0]
    check(found === 1n, `listOffsets by timestamp gave ${found}`)
    const { got } = await consume(1, { mode: 'manual', offsets: [{ topic, partition: 0, offset: found }] })
    check(str(got[0].value) === 't1' && got[0].timestamp === t0 + 1000n, `got ${str(got[0].value)}`)
  },

  async admin () {
    const name = `${topic}-admin`
    await withClient(new Admin(base), async admin => {
      await admin.createTopics({ topics: [name], partitions: 2, replicas: 1, configs: [{ name: 'retention.ms', value: '3600000' }] })
      const [described] = await admin.describeConfigs({
        resources: [{ resourceType: ConfigResourceTypes.TOPIC, resourceName: name, configurationKeys: ['retention.ms'] }],
      })
      const entry = described.configs.find(c => c.name === 'retention.ms')
      check(entry && entry.value === '3600000', `retention.ms = ${JSON.stringify(entry)}`)
      await admin.deleteTopics({ topics: [name] })
      // In a cluster each broker's metadata drops the topic on its own, a
      // moment after the answer, as in Kafka: listed again until it has.
      let listed = true
      for (const end = Date.now() + 10000; listed && Date.now() < end; await sleep(100)) {
        listed = (await admin.listTopics()).includes(name)
      }
      check(!listed, 'deleted topic still listed after 10 s')
    })
  },

  async 'large-message' () {
    const value = Buffer.alloc(1024 * 1024, 'a')
    await produce([{ value }])
    const { got } = await consume(1)
    check(Buffer.compare(got[0].value, value) === 0, `value of ${got[0].value.length} bytes differs`)
  },

  // Commit, abort, commit; a read_committed consumer sees the committed values only.
  async transactions () {
    await withClient(new Producer({ ...base, transactionalId: `compat-txn-${topic}`, idempotent: true }), async p => {
      for (const [values, commit] of [[['t1a', 't1b'], true], [['t2'], false], [['t3'], true]]) {
        const txn = await p.beginTransaction()
        await txn.send({ messages: values.map(v => ({ topic, value: Buffer.from(v) })) })
        await (commit ? txn.commit() : txn.abort())
      }
    })
    const { got } = await consume(3, { isolationLevel: FetchIsolationLevels.READ_COMMITTED })
    const values = got.map(m => str(m.value))
    check(same(values, ['t1a', 't1b', 't3']), `got ${JSON.stringify(values)}`)
    return `read_committed consumer got ${values.join(', ')}`
  },

  async 'unknown-topic' () {
    try {
      await produce([{ value: Buffer.from('x') }], { autocreateTopics: false })
    } catch (e) {
      const text = `${e.name}: ${e.message} ${JSON.stringify(e.errors || e.cause || '')}`
      check(/unknown topic|UNKNOWN_TOPIC/i.test(text), `unexpected error: ${text}`)
      return text.slice(0, 200)
    }
    throw new Error('produce to a missing topic succeeded')
  },
}

let verdict
try {
  const fn = scenarios[args.scenario]
  if (!fn) throw new NotApplicable('scenario not implemented for @platformatic/kafka')
  const detail = await Promise.race([fn(), sleep(55000).then(() => { throw new Error('timed out after 55 s') })])
  verdict = { result: 'pass', detail: detail || '' }
} catch (e) {
  if (!(e instanceof NotApplicable)) process.stderr.write(`${e.stack}\n${JSON.stringify(e.errors || e.cause || '')}\n`)
  verdict = { result: e instanceof NotApplicable ? 'n/a' : 'fail', detail: `${e.message}` }
}
process.stdout.write(JSON.stringify(verdict) + '\n', () => process.exit(0))
