// Produce to every partition of a topic, read them all back in a consumer group
// that commits, and report what happened (tests/cluster/test_cluster_clients.py):
//
//   BROKERS=127.0.0.1:9092 TOPIC=t GROUP=g PARTITIONS=6 PER_PARTITION=5 node partitions-roundtrip.js
//
// KafkaJS routes each request to the partition's leader as it learns it from
// Metadata; BROKERS may name a single broker of a cluster. stdout carries JSON
// lines only: {"delivered": [partition, offset, value]} for each message
// acknowledged, {"consumed": [partition, offset, value]} for each message the
// group read, then {"committed": {partition: offset}} as the group's committed
// offsets (fetched with the admin client after the consumer left). Exit 0 on
// success; non-zero, with the reason on stderr, on an error or after TIMEOUT_MS.
const { Kafka, logLevel } = require('kafkajs')

const brokers = (process.env.BROKERS || '127.0.0.1:9092').split(',')
const topic = process.env.TOPIC
const groupId = process.env.GROUP
const partitions = Number(process.env.PARTITIONS)
const perPartition = Number(process.env.PER_PARTITION)
const timeoutMs = Number(process.env.TIMEOUT_MS || 60000)

const kafka = new Kafka({
  clientId: 'pybroker-cluster-test',
  brokers,
  logLevel: logLevel.WARN,
  logCreator: () => ({ namespace, level, log }) => process.stderr.write(`[${namespace}] ${level} ${log.message}\n`),
})
const say = line => process.stdout.write(JSON.stringify(line) + '\n')

async function produce () {
  const producer = kafka.producer({ idempotent: true })
  await producer.connect()
  try {
    for (let p = 0; p < partitions; p++) {
      const values = Array.from({ length: perPartition }, (_, i) => `kafkajs p${p} #${i}`)
      const [meta] = await producer.send({ topic, acks: -1, messages: values.map(value => ({ partition: p, value })) })
      if (meta.errorCode !== 0 || meta.partition !== p) throw new Error(`send to ${p}: ${JSON.stringify(meta)}`)
      values.forEach((value, i) => say({ delivered: [p, Number(meta.baseOffset) + i, value] }))
    }
  } finally {
    await producer.disconnect()
  }
}

async function consume () {
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 500 })
  const expected = partitions * perPartition
  let seen = 0
  let done
  const finished = new Promise((resolve, reject) => {
    done = resolve
    consumer.on(consumer.events.CRASH, ({ payload }) => reject(payload.error))
  })
  await consumer.connect()
  try {
    await consumer.subscribe({ topic, fromBeginning: true })
    // autoCommit: KafkaJS commits what each batch resolved, and again on disconnect.
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        say({ consumed: [partition, Number(message.offset), message.value.toString()] })
        if (++seen === expected) done()
      },
    })
    await finished
  } finally {
    await consumer.disconnect()
  }
}

async function committed () {
  const admin = kafka.admin()
  await admin.connect()
  try {
    const [entry] = await admin.fetchOffsets({ groupId, topics: [topic] })
    say({ committed: Object.fromEntries(entry.partitions.map(p => [p.partition, Number(p.offset)])) })
  } finally {
    await admin.disconnect()
  }
}

const timer = setTimeout(() => {
  process.stderr.write(`partitions-roundtrip: timed out after ${timeoutMs} ms\n`)
  process.exit(2)
}, timeoutMs)

produce()
  .then(consume)
  .then(committed)
  .then(() => { clearTimeout(timer); process.exit(0) })
  .catch(err => {
    process.stderr.write(`partitions-roundtrip: ${err && err.stack ? err.stack : err}\n`)
    process.exit(1)
  })
