// Command crioshim lets CRI-O 1.36 drive gVisor's containerd-shim-runsc-v1 as a runtime_type
// "vm" handler. It stands in for the two changes cri-o#9974 makes (CRI-O main, after 1.36)
// until the lab's mirror holds a CRI-O release with them:
//
//   - CRI-O 1.36 accepts a vm runtime only under a name matching containerd-shim-*-v2, so this
//     program is installed under such a name (containerd-shim-runsc-crio-v2), beside the real
//     shim;
//   - CRI-O 1.36 takes the whole output of `<shim> ... start` as the shim's ttrpc address, while
//     gVisor's shim, built on containerd 2's shim library, prints its bootstrap parameters as
//     JSON ({"version":2,"address":"unix:///run/containerd/s/...","protocol":"ttrpc"}).
//
// For `start` it runs the real shim with the same arguments, environment, folder and standard
// input, waits for it (the shim forks its long-lived server and returns at once), and prints
// the address of its answer; a bare address passes through as it is. Every other invocation
// (`delete`) replaces this process with the real shim, so nothing of it stays running. The
// shim's server is the real shim's own child: CRI-O's calls after start never pass through here.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// realShimPath is the program this one stands in front of, set at build time
// (-ldflags "-X main.realShimPath=..."); when it is not, containerd-shim-runsc-v1 beside this one.
var realShimPath string

// bootstrap is the JSON containerd 2's shim library prints for `start` (shim.BootstrapParams).
type bootstrap struct {
	Version  int    `json:"version"`
	Address  string `json:"address"`
	Protocol string `json:"protocol"`
}

// address turns a shim's `start` output into the bare address CRI-O 1.36 reads. Output that is
// not a JSON object is taken as a bare address already (containerd 1.x shims, kata's).
func address(out []byte) (string, error) {
	text := strings.TrimSpace(string(out))
	if text == "" {
		return "", errors.New("the shim printed no address")
	}
	if !strings.HasPrefix(text, "{") {
		return text, nil
	}
	var params bootstrap
	if err := json.Unmarshal([]byte(text), &params); err != nil {
		return "", fmt.Errorf("the shim's bootstrap parameters %q: %w", text, err)
	}
	if params.Address == "" {
		return "", fmt.Errorf("the shim's bootstrap parameters %q name no address", text)
	}
	// CRI-O 1.36 speaks ttrpc to its shims; a grpc shim would need a client it does not have.
	if params.Protocol != "" && params.Protocol != "ttrpc" {
		return "", fmt.Errorf("the shim's bootstrap parameters %q: protocol %q, CRI-O speaks ttrpc", text, params.Protocol)
	}
	return params.Address, nil
}

// action is the shim action containerd's shim library reads: its first argument after the
// flags. CRI-O puts the action last ("-namespace ns -address a -publish-binary b -id x start").
func action(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[len(args)-1]
}

func realShim() (string, error) {
	if realShimPath != "" {
		return realShimPath, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(self), "containerd-shim-runsc-v1"), nil
}

func run() int {
	shim, err := realShim()
	if err != nil {
		fmt.Fprintf(os.Stderr, "crioshim: %v\n", err)
		return 1
	}
	args := os.Args[1:]
	if action(args) != "start" {
		argv := append([]string{shim}, args...)
		err := syscall.Exec(shim, argv, os.Environ())
		fmt.Fprintf(os.Stderr, "crioshim: exec %s: %v\n", shim, err)
		return 1
	}
	var out bytes.Buffer
	cmd := exec.Command(shim, args...)
	cmd.Stdin = os.Stdin
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		// CRI-O puts the output in its error: pass the shim's on as it was.
		os.Stdout.Write(out.Bytes())
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() > 0 {
			return exit.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "crioshim: %s start: %v\n", shim, err)
		return 1
	}
	addr, err := address(out.Bytes())
	if err != nil {
		fmt.Fprintf(os.Stderr, "crioshim: %v\n", err)
		return 1
	}
	fmt.Print(addr)
	return 0
}

func main() {
	os.Exit(run())
}
