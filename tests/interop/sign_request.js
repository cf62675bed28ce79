// Signs one request with the npm http-message-signatures library (a second, independent
// RFC 9421 implementation) and sends it. Arguments: keyPem method url [body] [idempotencyKey].
// Prints the status and the body of the answer as JSON.
const { httpbis: { signMessage }, createSigner } = require('http-message-signatures');
const crypto = require('node:crypto');
const fs = require('node:fs');

(async () => {
  const [pemPath, method, url, body, idempotencyKey] = process.argv.slice(2);
  const key = createSigner(crypto.createPrivateKey(fs.readFileSync(pemPath)), 'ed25519', 'demo');
  const headers = {};
  const fields = ['@method', '@path'];
  if (new URL(url).search) fields.push('@query');
  if (body) {
    headers['content-type'] = 'application/json';
    headers['content-digest'] = 'sha-512=:' + crypto.createHash('sha512').update(body).digest('base64') + ':';
    fields.push('content-digest', 'content-type');
  }
  if (idempotencyKey) {
    headers['idempotency-key'] = idempotencyKey;
    fields.push('idempotency-key');
  }
  const signed = await signMessage(
    { key, fields, params: ['keyid', 'alg', 'created', 'expires', 'nonce'],
      paramValues: { nonce: crypto.randomUUID() } },
    { method, url, headers, body },
  );
  const answer = await fetch(url, { method, headers: signed.headers, body: body || undefined });
  console.log(JSON.stringify({ status: answer.status, body: await answer.text() }));
})().catch((error) => { console.error(String(error)); process.exit(1); });
