"""The web console: server-rendered pages over the same use cases as the API.

Pages call the functions of :mod:`jobyard.service` that the API routes call, with the
principal of the signed-in user, so what a page shows and does follows the access
rules by construction. Sessions are login tokens carried in an HttpOnly cookie
(:mod:`jobyard.web.session`); every state change carries a CSRF token and must come
from the console's own origin (:mod:`jobyard.web.guard`). The API never accepts the
cookie: it keeps bearer tokens only.
"""
