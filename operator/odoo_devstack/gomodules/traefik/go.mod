module tenantops.local/traefikbuild

go 1.26.0

require github.com/traefik/traefik/v3 v3.7.13

// A stand-in for a nested module of Traefik's repository (ext/ext.go says why).
replace github.com/traefik/traefik/dynamic/ext => ./ext

// lego with its DNS provider factory replaced (lego_dns_providers.go.txt says why); the
// bootstrap prepares ./lego from the module cache before building.
replace github.com/go-acme/lego/v5 => ./lego

// Traefik's own replaces, which Go applies only in Traefik's module. Its fork of
// go-http-auth is not served by the proxy: the bootstrap prepares ./go-http-auth, the upstream
// release with the two functions the fork adds (go_http_auth_compat.go.txt).
replace (
	github.com/abbot/go-http-auth => ./go-http-auth
	github.com/gorilla/mux => github.com/containous/mux v0.0.0-20250523120546-41b6ec3aed59
)

exclude github.com/tencentcloud/tencentcloud-sdk-go v3.0.83+incompatible
