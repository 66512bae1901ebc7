//go:build tools

// Package tools pins Traefik for the local stack's ingress controller.
package tools

import _ "github.com/traefik/traefik/v3/cmd/traefik"
