// openid-client asking for what a portal may ask of the citizen's authentication and identity: a
// level with acr_values (ACR_VALUES), verified claims with the claims parameter (CLAIMS). It reports
// the ID token it validated and the userinfo, or the authorization error SatuID returned.
import * as client from 'openid-client'
import { hear, run, say } from './lines.mjs'

const { ISSUER, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, ACR_VALUES, CLAIMS, SCOPE } = process.env

run(async () => {
  // http only because the test server listens on 127.0.0.1 without TLS.
  const config = await client.discovery(new URL(ISSUER), CLIENT_ID, CLIENT_SECRET, undefined,
    { execute: [client.allowInsecureRequests] })
  const verifier = client.randomPKCECodeVerifier()
  const state = client.randomState()
  const nonce = client.randomNonce()
  const parameters = {
    redirect_uri: REDIRECT_URI,
    scope: SCOPE || 'openid',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce
  }
  if (ACR_VALUES) parameters.acr_values = ACR_VALUES
  if (CLAIMS) parameters.claims = CLAIMS
  say({ step: 'authorize', url: client.buildAuthorizationUrl(config, parameters).href })
  const { callback } = await hear()
  try {
    const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
      pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true
    })
    const claims = tokens.claims()
    const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub)
    say({ step: 'done', acr: claims.acr, amr: claims.amr, id_token: claims, userinfo: info })
  } catch (error) {
    if (!(error instanceof client.AuthorizationResponseError)) throw error
    say({ step: 'refused', error: error.error, error_description: error.error_description })
  }
})
