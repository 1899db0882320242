package main

import "testing"

func TestAddressFromBootstrapJSON(t *testing.T) {
	got, err := address([]byte(`{"version":2,"address":"unix:///run/containerd/s/abc","protocol":"ttrpc"}` + "\n"))
	if err != nil || got != "unix:///run/containerd/s/abc" {
		t.Fatalf("address = %q, %v", got, err)
	}
}

func TestBareAddressPassesThrough(t *testing.T) {
	got, err := address([]byte("unix:///run/containerd/s/abc\n"))
	if err != nil || got != "unix:///run/containerd/s/abc" {
		t.Fatalf("address = %q, %v", got, err)
	}
}

func TestRefusals(t *testing.T) {
	for name, out := range map[string]string{
		"empty":          " \n",
		"no address":     `{"version":2,"protocol":"ttrpc"}`,
		"grpc":           `{"version":3,"address":"unix:///x","protocol":"grpc"}`,
		"truncated JSON": `{"version":2,"address":"unix:///x"`,
	} {
		if got, err := address([]byte(out)); err == nil {
			t.Errorf("%s: address = %q, want an error", name, got)
		}
	}
}

func TestActionIsTheLastArgument(t *testing.T) {
	if got := action([]string{"-namespace", "default", "-address", "", "-id", "x", "start"}); got != "start" {
		t.Fatalf("action = %q", got)
	}
	if got := action(nil); got != "" {
		t.Fatalf("action(nil) = %q", got)
	}
}
