// openid-client asks for verified_claims (OpenID Connect for Identity Assurance 1.0) with the
// claims parameter, and reports what the ID token and userinfo carried.
import * as client from 'openid-client'
import { hear, run, say } from './lines.mjs'

const { ISSUER, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, CLAIMS } = process.env

run(async () => {
  const config = await client.discovery(new URL(ISSUER), CLIENT_ID, CLIENT_SECRET, undefined,
    { execute: [client.allowInsecureRequests] })
  const verifier = client.randomPKCECodeVerifier()
  const state = client.randomState()
  const nonce = client.randomNonce()
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT_URI,
    scope: 'openid profile',
    claims: CLAIMS,
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce
  })
  say({ step: 'authorize', url: url.href })
  const { callback } = await hear()
  const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
    pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true
  })
  const claims = tokens.claims()
  const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub)
  say({ step: 'done', id_token: claims, userinfo: info })
})
