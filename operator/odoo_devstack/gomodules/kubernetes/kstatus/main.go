// Command kstatus prints what sigs.k8s.io/cli-utils' kstatus concludes about objects:
// the library Flux's health assessment and `kstatus` use, run as is, so the tests of the
// operator's status check the real rules rather than a copy of them.
//
// It reads one object or a List (the output of `kubectl get -o json`) on stdin and writes
// one JSON line per object: {"kind", "name", "status", "message"}.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--version" {
		fmt.Println("kstatus checker on sigs.k8s.io/cli-utils v0.37.2")
		return
	}
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(2, "reading stdin: %v", err)
	}
	var read unstructured.Unstructured
	if err := read.UnmarshalJSON(data); err != nil {
		fail(2, "stdin is not a Kubernetes object: %v", err)
	}
	objects := []unstructured.Unstructured{read}
	if read.IsList() {
		list, err := read.ToList()
		if err != nil {
			fail(2, "reading the list: %v", err)
		}
		objects = list.Items
	}
	out := json.NewEncoder(os.Stdout)
	for i := range objects {
		result, err := status.Compute(&objects[i])
		if err != nil {
			fail(1, "%s/%s: %v", objects[i].GetKind(), objects[i].GetName(), err)
		}
		_ = out.Encode(map[string]string{
			"kind":    objects[i].GetKind(),
			"name":    objects[i].GetName(),
			"status":  result.Status.String(),
			"message": result.Message,
		})
	}
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kstatus: "+format+"\n", args...)
	os.Exit(code)
}
