// A single-page portal on oidc-client-ts, as its documentation sets it up: a public client with
// PKCE (its default), the user info loaded after sign-in, refresh by signinSilent, revocation and
// RP-initiated logout. CONFIG (issuer, client_id) comes from config.js, written by the test.
/* global oidc, CONFIG */
const out = document.getElementById('out')
const manager = new oidc.UserManager({
  authority: CONFIG.issuer,
  client_id: CONFIG.client_id,
  redirect_uri: location.origin + '/callback.html',
  post_logout_redirect_uri: location.origin + '/',
  response_type: 'code',
  scope: 'openid profile offline_access',
  loadUserInfo: true,
  automaticSilentRenew: false
})

document.getElementById('sign-in')?.addEventListener('click', () => manager.signinRedirect())
document.getElementById('sign-out').addEventListener('click', () => revokeAndSignOut()
  .catch((e) => { window.__error = String(e) }))

async function completeSignIn () {
  const user = await manager.signinRedirectCallback()
  const renewed = await manager.signinSilent() // with a refresh token: the refresh_token grant
  window.__result = {
    sub: user.profile.sub,
    name: user.profile.name, // from userinfo (loadUserInfo)
    refreshed: renewed.access_token !== user.access_token && Boolean(renewed.refresh_token)
  }
  out.textContent = JSON.stringify(window.__result)
}

async function revokeAndSignOut () {
  const user = await manager.getUser()
  await manager.revokeTokens(['refresh_token'])
  const tokenEndpoint = await manager.metadataService.getTokenEndpoint()
  const answer = await fetch(tokenEndpoint, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'refresh_token', refresh_token: user.refresh_token, client_id: CONFIG.client_id
    })
  })
  sessionStorage.setItem('revoked', (await answer.json()).error) // read after the logout redirect
  await manager.signoutRedirect()
}
