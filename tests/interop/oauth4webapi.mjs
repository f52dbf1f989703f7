// oauth4webapi (panva, OpenID certified, the low-level layer) by its documented code flow:
// discovery, PKCE, the authorization response (with RFC 9207 iss), ID token validation, userinfo,
// refresh. It sends the secret by HTTP Basic here, the other way from openid-client's default.
import * as oauth from 'oauth4webapi'
import { hear, run, say } from './lines.mjs'

const { ISSUER, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI } = process.env
const insecure = { [oauth.allowInsecureRequests]: true } // 127.0.0.1 without TLS in the test

run(async () => {
  const issuer = new URL(ISSUER)
  const as = await oauth.processDiscoveryResponse(issuer,
    await oauth.discoveryRequest(issuer, insecure))
  const client = { client_id: CLIENT_ID }
  const clientAuth = oauth.ClientSecretBasic(CLIENT_SECRET)
  const verifier = oauth.generateRandomCodeVerifier()
  const nonce = oauth.generateRandomNonce()
  const state = oauth.generateRandomState()
  const url = new URL(as.authorization_endpoint)
  url.search = new URLSearchParams({
    client_id: CLIENT_ID,
    redirect_uri: REDIRECT_URI,
    response_type: 'code',
    scope: 'openid profile offline_access',
    code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    nonce,
    state
  }).toString()
  say({ step: 'authorize', url: url.href })
  const { callback } = await hear()
  const params = oauth.validateAuthResponse(as, client, new URL(callback), state)
  const response = await oauth.authorizationCodeGrantRequest(as, client, clientAuth, params,
    REDIRECT_URI, verifier, insecure)
  const result = await oauth.processAuthorizationCodeResponse(as, client, response,
    { expectedNonce: nonce, requireIdToken: true })
  const claims = oauth.getValidatedIdTokenClaims(result)
  const info = await oauth.processUserInfoResponse(as, client, claims.sub,
    await oauth.userInfoRequest(as, client, result.access_token, insecure))
  const refreshed = await oauth.processRefreshTokenResponse(as, client,
    await oauth.refreshTokenGrantRequest(as, client, clientAuth, result.refresh_token, insecure))
  say({
    step: 'done',
    sub: claims.sub,
    acr: claims.acr,
    userinfo: info,
    refreshed: Boolean(refreshed.access_token && refreshed.refresh_token)
  })
})
