// openid-client asking for a level of assurance with acr_values, as a portal would: it reports the
// acr and amr of the ID token it validated, or the authorization error SatuID returned.
import * as client from 'openid-client'
import { hear, run, say } from './lines.mjs'

const { ISSUER, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, ACR_VALUES } = process.env

run(async () => {
  // http only because the test server listens on 127.0.0.1 without TLS.
  const config = await client.discovery(new URL(ISSUER), CLIENT_ID, CLIENT_SECRET, undefined,
    { execute: [client.allowInsecureRequests] })
  const verifier = client.randomPKCECodeVerifier()
  const state = client.randomState()
  const nonce = client.randomNonce()
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT_URI,
    scope: 'openid',
    acr_values: ACR_VALUES,
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce
  })
  say({ step: 'authorize', url: url.href })
  const { callback } = await hear()
  try {
    const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
      pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true
    })
    const claims = tokens.claims()
    say({ step: 'done', acr: claims.acr, amr: claims.amr })
  } catch (error) {
    if (!(error instanceof client.AuthorizationResponseError)) throw error
    say({ step: 'refused', error: error.error, error_description: error.error_description })
  }
})
