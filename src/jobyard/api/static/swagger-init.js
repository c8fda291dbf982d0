// Swagger UI over jobyard's own OpenAPI document. Loaded as a file (not inline) so
// the page's Content-Security-Policy can forbid inline scripts. No validator badge:
// it would send the document to another host.
window.ui = SwaggerUIBundle({
  url: new URL("api/v1/openapi.json", document.baseURI).href,
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  persistAuthorization: false,
  displayRequestDuration: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
