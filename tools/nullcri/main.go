// nullcri: a CRI server that answers every call at once, for measuring what the client side
// (hopbench's gRPC client, critest) costs by itself.
//
// It listens on a unix socket and serves the CRI v1 RuntimeService and ImageService from
// k8s.io/cri-api, the same generated code the runtimes serve. A pod or container exists only
// as an entry in a map (so status calls answer like a runtime's: a started container is
// RUNNING, a stopped one EXITED with code 0); nothing is created, no process is started.
// Calls it does not know return Unimplemented.
//
//	nullcri --listen /run/hopbench/nullcri.sock [--image REF ...]
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

type images []string

func (i *images) String() string     { return strings.Join(*i, ",") }
func (i *images) Set(v string) error { *i = append(*i, v); return nil }

type sandbox struct {
	config  *runtimeapi.PodSandboxConfig
	state   runtimeapi.PodSandboxState
	created int64
}

type container struct {
	sandbox  string
	config   *runtimeapi.ContainerConfig
	state    runtimeapi.ContainerState
	created  int64
	started  int64
	finished int64
}

type server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer
	mu         sync.Mutex
	sandboxes  map[string]*sandbox
	containers map[string]*container
	images     map[string]bool
}

func newID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func notFound(kind, id string) error {
	return status.Errorf(codes.NotFound, "%s %q not found", kind, id)
}

func (s *server) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{Version: "0.1.0", RuntimeName: "nullcri", RuntimeVersion: "0.1.0", RuntimeApiVersion: "v1"}, nil
}

func (s *server) Status(context.Context, *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	return &runtimeapi.StatusResponse{Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
		{Type: runtimeapi.RuntimeReady, Status: true},
		{Type: runtimeapi.NetworkReady, Status: true},
	}}}, nil
}

func (s *server) RuntimeConfig(context.Context, *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	return &runtimeapi.RuntimeConfigResponse{Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: runtimeapi.CgroupDriver_CGROUPFS}}, nil
}

func (s *server) RunPodSandbox(_ context.Context, r *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	id := newID()
	s.mu.Lock()
	s.sandboxes[id] = &sandbox{config: r.GetConfig(), state: runtimeapi.PodSandboxState_SANDBOX_READY, created: time.Now().UnixNano()}
	s.mu.Unlock()
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

func (s *server) StopPodSandbox(_ context.Context, r *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sb, ok := s.sandboxes[r.GetPodSandboxId()]
	if !ok {
		return nil, notFound("sandbox", r.GetPodSandboxId())
	}
	sb.state = runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	for _, c := range s.containers {
		if c.sandbox == r.GetPodSandboxId() && c.state == runtimeapi.ContainerState_CONTAINER_RUNNING {
			c.state, c.finished = runtimeapi.ContainerState_CONTAINER_EXITED, time.Now().UnixNano()
		}
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

func (s *server) RemovePodSandbox(_ context.Context, r *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sandboxes, r.GetPodSandboxId())
	for id, c := range s.containers {
		if c.sandbox == r.GetPodSandboxId() {
			delete(s.containers, id)
		}
	}
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

func (s *server) podStatus(id string, sb *sandbox) *runtimeapi.PodSandboxStatus {
	cfg := sb.config
	return &runtimeapi.PodSandboxStatus{
		Id: id, Metadata: cfg.GetMetadata(), State: sb.state, CreatedAt: sb.created,
		Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(),
		Network: &runtimeapi.PodSandboxNetworkStatus{},
	}
}

func (s *server) PodSandboxStatus(_ context.Context, r *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sb, ok := s.sandboxes[r.GetPodSandboxId()]
	if !ok {
		return nil, notFound("sandbox", r.GetPodSandboxId())
	}
	return &runtimeapi.PodSandboxStatusResponse{Status: s.podStatus(r.GetPodSandboxId(), sb)}, nil
}

func matches(want, have map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func (s *server) ListPodSandbox(_ context.Context, r *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []*runtimeapi.PodSandbox{}
	f := r.GetFilter()
	for id, sb := range s.sandboxes {
		if f.GetId() != "" && f.GetId() != id || !matches(f.GetLabelSelector(), sb.config.GetLabels()) {
			continue
		}
		if f.GetState() != nil && f.GetState().GetState() != sb.state {
			continue
		}
		out = append(out, &runtimeapi.PodSandbox{Id: id, Metadata: sb.config.GetMetadata(), State: sb.state,
			CreatedAt: sb.created, Labels: sb.config.GetLabels(), Annotations: sb.config.GetAnnotations()})
	}
	return &runtimeapi.ListPodSandboxResponse{Items: out}, nil
}

func (s *server) CreateContainer(_ context.Context, r *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sandboxes[r.GetPodSandboxId()]; !ok {
		return nil, notFound("sandbox", r.GetPodSandboxId())
	}
	id := newID()
	s.containers[id] = &container{sandbox: r.GetPodSandboxId(), config: r.GetConfig(),
		state: runtimeapi.ContainerState_CONTAINER_CREATED, created: time.Now().UnixNano()}
	return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
}

func (s *server) setState(id string, state runtimeapi.ContainerState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return notFound("container", id)
	}
	now := time.Now().UnixNano()
	switch state {
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		c.started = now
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		if c.state != runtimeapi.ContainerState_CONTAINER_RUNNING {
			return nil
		}
		c.finished = now
	}
	c.state = state
	return nil
}

func (s *server) StartContainer(_ context.Context, r *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	return &runtimeapi.StartContainerResponse{}, s.setState(r.GetContainerId(), runtimeapi.ContainerState_CONTAINER_RUNNING)
}

func (s *server) StopContainer(_ context.Context, r *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	return &runtimeapi.StopContainerResponse{}, s.setState(r.GetContainerId(), runtimeapi.ContainerState_CONTAINER_EXITED)
}

func (s *server) RemoveContainer(_ context.Context, r *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	s.mu.Lock()
	delete(s.containers, r.GetContainerId())
	s.mu.Unlock()
	return &runtimeapi.RemoveContainerResponse{}, nil
}

func (s *server) ContainerStatus(_ context.Context, r *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[r.GetContainerId()]
	if !ok {
		return nil, notFound("container", r.GetContainerId())
	}
	return &runtimeapi.ContainerStatusResponse{Status: &runtimeapi.ContainerStatus{
		Id: r.GetContainerId(), Metadata: c.config.GetMetadata(), State: c.state,
		CreatedAt: c.created, StartedAt: c.started, FinishedAt: c.finished, ExitCode: 0,
		Image: c.config.GetImage(), ImageRef: c.config.GetImage().GetImage(),
		Labels: c.config.GetLabels(), Annotations: c.config.GetAnnotations(),
	}}, nil
}

func (s *server) ListContainers(_ context.Context, r *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []*runtimeapi.Container{}
	f := r.GetFilter()
	for id, c := range s.containers {
		if f.GetId() != "" && f.GetId() != id || f.GetPodSandboxId() != "" && f.GetPodSandboxId() != c.sandbox {
			continue
		}
		if !matches(f.GetLabelSelector(), c.config.GetLabels()) {
			continue
		}
		out = append(out, &runtimeapi.Container{Id: id, PodSandboxId: c.sandbox, Metadata: c.config.GetMetadata(),
			Image: c.config.GetImage(), State: c.state, CreatedAt: c.created, Labels: c.config.GetLabels()})
	}
	return &runtimeapi.ListContainersResponse{Containers: out}, nil
}

func (s *server) ImageStatus(_ context.Context, r *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	ref := r.GetImage().GetImage()
	if !s.images[ref] {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	return &runtimeapi.ImageStatusResponse{Image: &runtimeapi.Image{Id: "sha256:" + strings.Repeat("0", 64),
		RepoTags: []string{ref}, Size: 1}}, nil
}

func (s *server) ImageFsInfo(context.Context, *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	return &runtimeapi.ImageFsInfoResponse{}, nil
}

func (s *server) ListImages(context.Context, *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	out := []*runtimeapi.Image{}
	for ref := range s.images {
		out = append(out, &runtimeapi.Image{Id: "sha256:" + strings.Repeat("0", 64), RepoTags: []string{ref}, Size: 1})
	}
	return &runtimeapi.ListImagesResponse{Images: out}, nil
}

func main() {
	listen := flag.String("listen", "", "unix socket path to serve CRI on")
	var known images
	flag.Var(&known, "image", "an image reference ImageStatus reports as present (repeatable)")
	flag.Parse()
	if *listen == "" {
		fmt.Fprintln(os.Stderr, "nullcri: --listen PATH is required")
		os.Exit(2)
	}
	if err := os.Remove(*listen); err != nil && !os.IsNotExist(err) {
		fmt.Fprintln(os.Stderr, "nullcri:", err)
		os.Exit(1)
	}
	lis, err := net.Listen("unix", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nullcri:", err)
		os.Exit(1)
	}
	s := &server{sandboxes: map[string]*sandbox{}, containers: map[string]*container{}, images: map[string]bool{}}
	for _, ref := range known {
		s.images[ref] = true
	}
	g := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(g, s)
	runtimeapi.RegisterImageServiceServer(g, s)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		g.Stop()
	}()
	fmt.Println("nullcri: serving on", *listen)
	if err := g.Serve(lis); err != nil {
		fmt.Fprintln(os.Stderr, "nullcri:", err)
		os.Exit(1)
	}
	_ = os.Remove(*listen)
}
