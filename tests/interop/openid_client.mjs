// openid-client (panva, OpenID certified) with only a client_id and a client_secret: its defaults
// (client_secret_post, PKCE S256, nonce, state, RFC 9207 iss check) against SatuID.
import * as client from 'openid-client'
import { hear, run, say } from './lines.mjs'

const { ISSUER, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, POST_LOGOUT_URI } = process.env

run(async () => {
  // http only because the test server listens on 127.0.0.1 without TLS.
  const config = await client.discovery(new URL(ISSUER), CLIENT_ID, CLIENT_SECRET, undefined,
    { execute: [client.allowInsecureRequests] })
  const verifier = client.randomPKCECodeVerifier()
  const state = client.randomState()
  const nonce = client.randomNonce()
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT_URI,
    scope: 'openid profile email offline_access',
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
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token)
  await client.tokenRevocation(config, refreshed.refresh_token)
  let revoked = false
  try {
    await client.refreshTokenGrant(config, refreshed.refresh_token)
  } catch (error) {
    revoked = error.error === 'invalid_grant'
  }
  const end = client.buildEndSessionUrl(config, {
    id_token_hint: tokens.id_token, post_logout_redirect_uri: POST_LOGOUT_URI, state: 'bye'
  })
  say({
    step: 'done',
    sub: claims.sub,
    sid: claims.sid,
    acr: claims.acr,
    userinfo: info,
    refreshed: Boolean(refreshed.access_token && refreshed.refresh_token),
    revoked,
    end_session: end.href
  })
})
