// The --security properties (see security.py) for the Node scenario programs:
// the file read, the TLS options, and the unsecured JWT for OAUTHBEARER.
const fs = require('fs')

// A Java properties file of key=value lines (no continuations); {} without one.
function readProperties (path) {
  const props = {}
  if (!path) return props
  for (const raw of fs.readFileSync(path, 'utf8').split('\n')) {
    const line = raw.trim()
    if (!line || line.startsWith('#') || line.startsWith('!')) continue
    const at = line.indexOf('=')
    props[line.slice(0, at).trim()] = line.slice(at + 1).trim()
  }
  return props
}

// node:tls options (CA, client certificate and key, PEM) for SSL and SASL_SSL; undefined otherwise.
function tlsOptions (props) {
  if (!['SSL', 'SASL_SSL'].includes(props['security.protocol'])) return undefined
  const read = key => props[key] && fs.readFileSync(props[key], 'utf8')
  const options = { ca: [read('ssl.ca.location')] }
  if (props['ssl.certificate.location']) Object.assign(options, { cert: read('ssl.certificate.location'), key: read('ssl.key.location') })
  return options
}

// An unsigned JWS (RFC 7515 appendix A.5) with the claims Kafka's unsecured validator reads.
function unsecuredJwt (subject, lifeS = 3600) {
  const part = claims => Buffer.from(JSON.stringify(claims)).toString('base64url')
  const now = Math.floor(Date.now() / 1000)
  return `${part({ alg: 'none' })}.${part({ sub: subject, iat: now, exp: now + lifeS })}.`
}

module.exports = { readProperties, tlsOptions, unsecuredJwt }
