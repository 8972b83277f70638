package l7bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/graylane/graylane/internal/netlab"
)

// The peers: HAProxy and nginx as the gateway's own processes, each with
// a configuration file in a temporary directory, listening on the VIP,
// which the gateway then owns (a /32 on its loopback). Both pick the pool
// from X-Canary: v2 (HAProxy an ACL, nginx a map) and open a connection
// to the backend per client connection (HAProxy: http-reuse never; nginx
// on vipPort: no upstream keepalive): what Graylane's splice does. On
// kaPort nginx keeps idle upstream connections instead (keepalive 32),
// for the keep-alive and bulk figures; HAProxy keeps the backend
// connection of a client connection for that connection's later
// requests by itself.

// Ports on netlab.VIP4.
const (
	vipPort    = 80 // new connections, latency; keep-alive and bulk but for nginx
	canaryPort = 81 // graylane-l4 only: an L4 service of the canary pool
	kaPort     = 82 // nginx: keep-alive and bulk, with upstream keepalive
)

// peerConfig is what the peers' templates are rendered with.
type peerConfig struct {
	Dir            string
	VIP            netip.Addr
	Port, KAPort   int
	Stable, Canary []netip.AddrPort
}

var haproxyConfig = template.Must(template.New("haproxy").Parse(`global
	maxconn 4000
	pidfile {{.Dir}}/haproxy.pid

defaults
	mode http
	timeout connect 5s
	timeout client 30s
	timeout server 30s
	http-reuse never
	option splice-auto

frontend web
	bind {{.VIP}}:{{.Port}}
	acl canary hdr(x-canary) -m str v2
	use_backend canary if canary
	default_backend stable

backend stable
	balance roundrobin
{{- range $i, $b := .Stable}}
	server s{{$i}} {{$b}}
{{- end}}

backend canary
	balance roundrobin
{{- range $i, $b := .Canary}}
	server c{{$i}} {{$b}}
{{- end}}
`))

var nginxConfig = template.Must(template.New("nginx").Parse(`worker_processes auto;
worker_rlimit_nofile 16384;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log warn;
events { worker_connections 8000; }
http {
	access_log off;
	keepalive_requests 1000000;
	client_body_temp_path {{.Dir}}/body;
	proxy_temp_path {{.Dir}}/proxy;
	fastcgi_temp_path {{.Dir}}/fastcgi;
	uwsgi_temp_path {{.Dir}}/uwsgi;
	scgi_temp_path {{.Dir}}/scgi;
	map $http_x_canary $pool { default stable; v2 canary; }
	map $http_x_canary $pool_ka { default stable_ka; v2 canary_ka; }
	upstream stable { {{range .Stable}}server {{.}}; {{end}}}
	upstream canary { {{range .Canary}}server {{.}}; {{end}}}
	upstream stable_ka { {{range .Stable}}server {{.}}; {{end}}keepalive 32; }
	upstream canary_ka { {{range .Canary}}server {{.}}; {{end}}keepalive 32; }
	proxy_http_version 1.1;
	proxy_buffer_size 64k;
	proxy_buffers 16 64k;
	proxy_max_temp_file_size 0;
	server {
		listen {{.VIP}}:{{.Port}} reuseport backlog=4096;
		location / { proxy_pass http://$pool; }
	}
	server {
		listen {{.VIP}}:{{.KAPort}} reuseport backlog=4096;
		location / { proxy_pass http://$pool_ka; proxy_set_header Connection ""; }
	}
}
`))

// backendTargets are the lab's stable and canary hosts' bench servers.
func backendTargets(lab *netlab.Lab) (stable, canary []netip.AddrPort) {
	for _, h := range lab.Stable {
		stable = append(stable, netip.AddrPortFrom(h.Addr4, netlab.BenchHTTPPort))
	}
	for _, h := range lab.Canary {
		canary = append(canary, netip.AddrPortFrom(h.Addr4, netlab.BenchHTTPPort))
	}
	return stable, canary
}

// haproxy runs HAProxy on the gateway.
func haproxy(ctx context.Context, lab *netlab.Lab) (steering, error) {
	return startPeer(ctx, lab, "haproxy", haproxyConfig, vipPort, func(cfg string) []string {
		return []string{"haproxy", "-f", cfg, "-db"}
	})
}

// nginx runs nginx on the gateway.
func nginx(ctx context.Context, lab *netlab.Lab) (steering, error) {
	return startPeer(ctx, lab, "nginx", nginxConfig, kaPort, func(cfg string) []string {
		return []string{"nginx", "-c", cfg, "-e", filepath.Join(filepath.Dir(cfg), "error.log"), "-g", "daemon off; master_process on;"}
	})
}

// startPeer gives the gateway the VIP, writes the peer's configuration to
// a temporary directory, starts the peer and waits until the VIP answers.
func startPeer(ctx context.Context, lab *netlab.Lab, name string, tmpl *template.Template, keep int, argv func(cfg string) []string) (st steering, err error) {
	gw := lab.Gateway
	if err := run(ctx, gw, "ip", "addr", "add", netip.PrefixFrom(netlab.VIP4, 32).String(), "dev", "lo"); err != nil {
		return st, err
	}
	dir, err := os.MkdirTemp("", "l7bench-"+name+"-")
	if err != nil {
		return st, err
	}
	stable, canary := backendTargets(lab)
	var b strings.Builder
	if err := tmpl.Execute(&b, peerConfig{Dir: dir, VIP: netlab.VIP4, Port: vipPort, KAPort: kaPort, Stable: stable, Canary: canary}); err != nil {
		os.RemoveAll(dir)
		return st, err
	}
	cfg := filepath.Join(dir, name+".conf")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		os.RemoveAll(dir)
		return st, err
	}
	args := argv(cfg)
	cmd := gw.Command(context.Background(), args[0], args[1:]...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	done, err := netlab.Start(cmd)
	if err != nil {
		os.RemoveAll(dir)
		return st, fmt.Errorf("start %s: %w", name, err)
	}
	exited := make(chan struct{}) // closed when the peer has exited
	go func() { <-done; close(exited) }()
	stop := func() error {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		return os.RemoveAll(dir)
	}
	vip, kept := netip.AddrPortFrom(netlab.VIP4, vipPort), netip.AddrPortFrom(netlab.VIP4, uint16(keep))
	if err := waitServing(ctx, lab, vip, exited); err != nil {
		stop()
		return st, fmt.Errorf("%s: %w; its output: %s", name, err, out.String())
	}
	return steering{
		targets:  targets{stable: []netip.AddrPort{vip}, canary: []netip.AddrPort{vip}, keep: [2]netip.AddrPort{kept, kept}},
		gwPid:    cmd.Process.Pid,
		teardown: stop,
	}, nil
}

// waitServing makes requests to addr until one is answered right (for
// up to 10 s), and fails early if exited is closed.
func waitServing(ctx context.Context, lab *netlab.Lab, addr netip.AddrPort, exited <-chan struct{}) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := lab.Client.OnThread(func(dial netlab.Dial) error {
			if err := oneRequest(ctx, dial, addr, true); err != nil {
				return err
			}
			return oneRequest(ctx, dial, addr, false)
		})
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before serving %s", addr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not served right after 10s: %w", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func run(ctx context.Context, h *netlab.Host, name string, args ...string) error {
	out, err := h.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}
