// Command pause is the sandbox image of the real test node: the process
// that holds a pod's namespaces while its containers come and go. It
// reaps the children it inherits as PID 1 and exits 0 on SIGTERM or
// SIGINT. containerd runs it under the name of the upstream pause image
// (registry.k8s.io/pause), which is never pulled: the node imports this
// program instead (see package realnode). It lives under testdata: no
// package of the module, only a source the node builds (images_linux.go).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sig {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
