//go:build tools

// The packages the kubeconform command imports, so that go mod tidy records every
// checksum its build needs (a main package cannot be imported itself).
package tools

import (
	_ "github.com/yannh/kubeconform/pkg/config"
	_ "github.com/yannh/kubeconform/pkg/output"
	_ "github.com/yannh/kubeconform/pkg/resource"
	_ "github.com/yannh/kubeconform/pkg/validator"
)
