// Package ext stands in for Traefik's dynamic-configuration extension module. It is a nested
// module of Traefik's repository, which Traefik's own go.mod replaces with a local folder, so
// it is not in the v3 module the proxy serves. Open-source Traefik embeds its two types, empty,
// in dynamic.HTTPConfiguration and dynamic.Router, and copies them by value.
package ext

// HTTP is embedded in dynamic.HTTPConfiguration.
type HTTP struct{}

// Router is embedded in dynamic.Router.
type Router struct{}
