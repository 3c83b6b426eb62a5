// KafkaJS scenarios (see compat/README.md for the contract):
//   node scenarios.js --bootstrap HOST:PORT --scenario NAME --topic T [--security FILE]
// Prints one JSON line {"result": "pass"|"fail"|"n/a", "detail": "..."}.
const crypto = require('crypto')
const { Kafka, CompressionTypes, ConfigResourceTypes, logLevel } = require('kafkajs')
const { readProperties, tlsOptions, unsecuredJwt } = require('../node-security.cjs')

const args = {}
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1]
const topic = args.topic || 'compat'
const security = readProperties(args.security)

// KafkaJS's sasl option for the --security properties.
function sasl () {
  const mechanism = security['sasl.mechanism']
  if (!mechanism) return undefined
  const username = security['sasl.username']
  if (mechanism === 'OAUTHBEARER') {
    return { mechanism: 'oauthbearer', oauthBearerProvider: async () => ({ value: unsecuredJwt(username) }) }
  }
  return { mechanism: mechanism.toLowerCase(), username, password: security['sasl.password'] }
}

const kafka = new Kafka({
  clientId: 'pybroker-compat',
  brokers: [args.bootstrap || '127.0.0.1:9092'],
  ssl: tlsOptions(security),
  sasl: sasl(),
  logLevel: logLevel.ERROR,
  logCreator: () => ({ namespace, log }) => process.stderr.write(`[${namespace}] ${log.message}\n`),
  retry: { retries: 3 },
})

class NotApplicable extends Error {}
const check = (ok, message) => { if (!ok) throw new Error(message) }
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
const numbered = n => Array.from({ length: n }, (_, i) => `m${i}`.repeat(20))
const str = b => (b === null || b === undefined ? null : b.toString())

async function waitFor (predicate, ms, what) {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(100)) if (predicate()) return
  throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`)
}

async function produce (messages, options = {}) {
  const producer = kafka.producer()
  await producer.connect()
  try {
    await producer.send({ topic, messages, ...options })
  } finally {
    await producer.disconnect()
  }
}

// Consume `count` messages with a group consumer (KafkaJS has no group-less consumer).
async function consume (count, { groupId = `${topic}-${crypto.randomUUID()}`, afterRun, onMessage } = {}) {
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 500 })
  const got = []
  await consumer.connect()
  try {
    await consumer.subscribe({ topic, fromBeginning: true })
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        if (got.length < count) got.push({ partition, ...message })
        if (onMessage) await onMessage(consumer, got)
      },
    })
    if (afterRun) await afterRun(consumer)
    await waitFor(() => got.length >= count, 20000, `${count} messages (got ${got.length})`)
  } finally {
    await consumer.disconnect()
  }
  return got
}

async function roundTrip (options) {
  const values = numbered(20)
  await produce(values.map(value => ({ key: 'k', value })), options)
  const got = (await consume(values.length)).map(m => str(m.value))
  check(JSON.stringify(got) === JSON.stringify(values), 'values differ')
}

const scenarios = {
  async version () { return require('kafkajs/package.json').version },

  async metadata () {
    const admin = kafka.admin()
    await admin.connect()
    const cluster = await admin.describeCluster()
    const { topics } = await admin.fetchTopicMetadata({ topics: [topic] })
    await admin.disconnect()
    const partitions = topics[0].partitions.map(p => p.partitionId)
    check(JSON.stringify(partitions) === '[0]', `partitions ${partitions}`)
    return `${cluster.brokers.length} broker(s), topic with partitions [${partitions}]`
  },

  async roundtrip () {
    await produce([
      { key: 'k1', value: 'v1', headers: { h1: 'a', h2: 'b' } },
      { key: 'k2', value: null },
      { value: 'v3', headers: { only: 'c' } },
    ])
    const got = (await consume(3)).map(m => [str(m.key), str(m.value),
      Object.entries(m.headers).map(([k, v]) => `${k}=${str(v)}`).join(',')])
    const want = [['k1', 'v1', 'h1=a,h2=b'], ['k2', null, ''], [null, 'v3', 'only=c']]
    check(JSON.stringify(got) === JSON.stringify(want), `got ${JSON.stringify(got)}`)
  },

  gzip: () => roundTrip({ compression: CompressionTypes.GZIP }),
  snappy: () => { throw new NotApplicable('KafkaJS ships only GZIP; snappy needs a codec plugin (kafkajs-snappy)') },
  lz4: () => { throw new NotApplicable('KafkaJS ships only GZIP; lz4 needs a codec plugin (kafkajs-lz4)') },
  zstd: () => { throw new NotApplicable('KafkaJS ships only GZIP; zstd needs a codec plugin (@kafkajs/zstd)') },
  'acks-0': () => roundTrip({ acks: 0 }),
  'acks-1': () => roundTrip({ acks: 1 }),
  'acks-all': () => roundTrip({ acks: -1 }),

  async 'group-resume' () {
    await produce(numbered(10).map(value => ({ value })))
    const groupId = `${topic}-group`
    let committed = false
    await consume(4, {
      groupId,
      onMessage: async (consumer, got) => {
        if (got.length === 4 && !committed) {
          committed = true
          await consumer.commitOffsets([{ topic, partition: 0, offset: String(Number(got[3].offset) + 1) }])
        }
      },
    })
    const rest = (await consume(6, { groupId })).map(m => Number(m.offset))
    check(JSON.stringify(rest) === '[4,5,6,7,8,9]', `resumed at ${rest}`)
    const admin = kafka.admin()
    await admin.connect()
    const [offsets] = await admin.fetchOffsets({ groupId, topics: [topic] })
    await admin.disconnect()
    check(offsets.partitions[0].offset === '4', `committed ${JSON.stringify(offsets)}`)
  },

  async rebalance () {
    const groupId = `${topic}-group`
    const assigned = [[], []]
    const members = [0, 1].map(i => {
      const consumer = kafka.consumer({ groupId })
      consumer.on(consumer.events.GROUP_JOIN, e => { assigned[i] = e.payload.memberAssignment[topic] || [] })
      return consumer
    })
    const start = async consumer => {
      await consumer.connect()
      await consumer.subscribe({ topic })
      await consumer.run({ eachMessage: async () => {} })
    }
    try {
      await start(members[0])
      await waitFor(() => assigned[0].length === 2, 30000, 'first member to get both partitions')
      await start(members[1])
      await waitFor(() => assigned[0].length === 1 && assigned[1].length === 1 && assigned[0][0] !== assigned[1][0],
        30000, `a split (have ${JSON.stringify(assigned)})`)
    } finally {
      await Promise.all(members.map(m => m.disconnect()))
    }
  },

  async 'offsets-by-time' () {
    const base = Date.now() - 60000
    await produce([0, 1, 2].map(i => ({ value: `t${i}`, timestamp: String(base + 1000 * i) })))
    const admin = kafka.admin()
    await admin.connect()
    const [found] = await admin.fetchTopicOffsetsByTimestamp(topic, base + 500)
    await admin.disconnect()
    check(found.offset === '1', `fetchTopicOffsetsByTimestamp gave ${JSON.stringify(found)}`)
    const got = await consume(1, { afterRun: async c => c.seek({ topic, partition: 0, offset: found.offset }) })
    check(str(got[0].value) === 't1' && got[0].timestamp === String(base + 1000), `got ${str(got[0].value)}`)
  },

  async admin () {
    const name = `${topic}-admin`
    const admin = kafka.admin()
    await admin.connect()
    try {
      const configEntries = [{ name: 'retention.ms', value: '3600000' }]
      check(await admin.createTopics({ topics: [{ topic: name, numPartitions: 2, configEntries }] }), 'not created')
      const { resources } = await admin.describeConfigs({
        resources: [{ type: ConfigResourceTypes.TOPIC, name, configNames: ['retention.ms'] }],
      })
      const value = resources[0].configEntries.find(e => e.configName === 'retention.ms')
      check(value && value.configValue === '3600000', `retention.ms = ${JSON.stringify(value)}`)
      await admin.deleteTopics({ topics: [name] })
      // In a cluster each broker's metadata drops the topic on its own, a
      // moment after the answer, as in Kafka: listed again until it has.
      let listed = true
      for (const end = Date.now() + 10000; listed && Date.now() < end; await sleep(100)) {
        listed = (await admin.listTopics()).includes(name)
      }
      check(!listed, 'deleted topic still listed after 10 s')
    } finally {
      await admin.disconnect()
    }
  },

  async 'large-message' () {
    const value = Buffer.alloc(1024 * 1024, 'a')
    await produce([{ value }])
    const [got] = await consume(1)
    check(Buffer.compare(got.value, value) === 0, `value of ${got.value.length} bytes differs`)
  },

  // Commit, abort, commit; a read_committed consumer (KafkaJS's default) sees
  // the committed values only.
  async transactions () {
    const producer = kafka.producer({ transactionalId: `compat-txn-${topic}`, maxInFlightRequests: 1, idempotent: true })
    await producer.connect()
    try {
      for (const [values, commit] of [[['t1a', 't1b'], true], [['t2'], false], [['t3'], true]]) {
        const txn = await producer.transaction()
        await txn.send({ topic, messages: values.map(value => ({ value })) })
        await (commit ? txn.commit() : txn.abort())
      }
    } finally {
      await producer.disconnect()
    }
    const got = (await consume(3)).map(m => str(m.value))
    check(JSON.stringify(got) === JSON.stringify(['t1a', 't1b', 't3']), `got ${JSON.stringify(got)}`)
    return `read_committed consumer got ${got.join(', ')}`
  },

  async 'unknown-topic' () {
    try {
      await produce([{ value: 'x' }])
    } catch (e) {
      return `${e.name}: ${e.message}`
    }
    throw new Error('produce to a missing topic succeeded')
  },

  // The producer of kafka.js.org/docs/getting-started as written, then the
  // page's consumer (getting-started-consumer.js beside this file).
  async 'getting-started' () {
    const kafka = new Kafka({ clientId: 'my-app', brokers: [args.bootstrap], logLevel: logLevel.ERROR })
    const producer = kafka.producer()

    await producer.connect()
    await producer.send({
      topic: 'test-topic',
      messages: [
        { value: 'Hello KafkaJS user!' },
      ],
    })

    await producer.disconnect()

    const { execFileSync } = require('child_process')
    const out = execFileSync('node', [`${__dirname}/getting-started-consumer.js`, args.bootstrap, 'test-topic',
      'test-group', '1', '30000'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
    const values = out.trim().split('\n').map(line => JSON.parse(line).value)
    check(values.includes('Hello KafkaJS user!'), `consumer printed ${out}`)
    return values.join(', ')
  },
}

async function main () {
  let verdict
  try {
    const fn = scenarios[args.scenario]
    if (!fn) throw new NotApplicable('scenario not implemented for KafkaJS')
    const detail = await Promise.race([fn(), sleep(55000).then(() => { throw new Error('timed out after 55 s') })])
    verdict = { result: 'pass', detail: detail || '' }
  } catch (e) {
    if (!(e instanceof NotApplicable)) process.stderr.write(`${e.stack}\n`)
    verdict = { result: e instanceof NotApplicable ? 'n/a' : 'fail', detail: `${e.message}` }
  }
  process.stdout.write(JSON.stringify(verdict) + '\n', () => process.exit(0))
}

main()
