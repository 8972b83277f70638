# Graylane. `make help` lists the targets.

GO      ?= go
BIN     := bin
PKG     := github.com/graylane/graylane
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X $(PKG)/pkg/version.Version=$(VERSION)

# Packages whose tests need no privileges: run with the race detector.
PURE_PKGS := ./agent/systemd/... ./pkg/service/... ./pkg/manifest/... ./pkg/release/... ./pkg/rollout/... ./pkg/breaker/... ./pkg/gate/... ./pkg/webhook/... ./pkg/controller/... ./pkg/maglev/... ./pkg/strictyaml/... ./pkg/gtpu/... ./pkg/histogram/... ./pkg/window/... ./pkg/pki/... ./pkg/api/... ./agent/config/... ./agent/apiserver/... ./agent/cmd/... ./cluster/... ./ctl/... ./pkg/capture/... ./pkg/redact/... ./pkg/replay/... ./pkg/inetsum/... ./pkg/shadow/... ./internal/codeshape/...
# Debian packages the tests, the demo and `make generate` use.
DEB_PKGS  := clang-19 llvm-19 libbpf-dev iproute2 ethtool iperf3 wrk nftables iptables prometheus systemd vagrant tshark tcpreplay lintian haproxy nginx

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build graylane-agent, graylanectl and the lab tools into bin/
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./agent/cmd/graylane-agent ./ctl/cmd/graylanectl ./internal/netlab/cmd/graylane-lab ./internal/labagent/cmd/graylane-demo

PREFIX     ?= /usr
BINDIR     ?= $(PREFIX)/bin
UNITDIR    ?= /lib/systemd/system
CONFDIR    ?= /etc/graylane
COMPLETIONDIR ?= $(PREFIX)/share
MANDIR     ?= $(PREFIX)/share/man

.PHONY: install
install: build ## Install the binaries, the systemd unit, a default config (an existing one is kept), graylanectl's man pages and shell completions (DESTDIR aware)
	install -D -m 0755 $(BIN)/graylane-agent $(DESTDIR)$(BINDIR)/graylane-agent
	install -D -m 0755 $(BIN)/graylanectl $(DESTDIR)$(BINDIR)/graylanectl
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed 's|@BINDIR@|$(BINDIR)|g' agent/systemd/graylane-agent.service > $(DESTDIR)$(UNITDIR)/graylane-agent.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/graylane-agent.service
	install -d -m 0755 $(DESTDIR)$(CONFDIR)/manifests.d
	[ -e $(DESTDIR)$(CONFDIR)/agent.yaml ] || install -m 0600 agent/systemd/agent.yaml $(DESTDIR)$(CONFDIR)/agent.yaml
	install -d -m 0755 $(DESTDIR)$(COMPLETIONDIR)/bash-completion/completions $(DESTDIR)$(COMPLETIONDIR)/zsh/vendor-completions $(DESTDIR)$(COMPLETIONDIR)/fish/vendor_completions.d
	$(BIN)/graylanectl completion bash > $(DESTDIR)$(COMPLETIONDIR)/bash-completion/completions/graylanectl
	$(BIN)/graylanectl completion zsh > $(DESTDIR)$(COMPLETIONDIR)/zsh/vendor-completions/_graylanectl
	$(BIN)/graylanectl completion fish > $(DESTDIR)$(COMPLETIONDIR)/fish/vendor_completions.d/graylanectl.fish
	install -d -m 0755 $(DESTDIR)$(MANDIR)/man1
	$(GO) run ./ctl/manpages/cmd/graylane-man $(DESTDIR)$(MANDIR)/man1
	chmod 0644 $(DESTDIR)$(MANDIR)/man1/graylanectl*.1
	chmod 0644 $(DESTDIR)$(COMPLETIONDIR)/bash-completion/completions/graylanectl $(DESTDIR)$(COMPLETIONDIR)/zsh/vendor-completions/_graylanectl $(DESTDIR)$(COMPLETIONDIR)/fish/vendor_completions.d/graylanectl.fish

.PHONY: uninstall
uninstall: ## Remove what install laid out, except the configuration and the data (run `graylane-agent cleanup` first to take the programs off)
	rm -f $(DESTDIR)$(BINDIR)/graylane-agent $(DESTDIR)$(BINDIR)/graylanectl $(DESTDIR)$(UNITDIR)/graylane-agent.service
	rm -f $(DESTDIR)$(MANDIR)/man1/graylanectl*.1
	rm -f $(DESTDIR)$(COMPLETIONDIR)/bash-completion/completions/graylanectl $(DESTDIR)$(COMPLETIONDIR)/zsh/vendor-completions/_graylanectl $(DESTDIR)$(COMPLETIONDIR)/fish/vendor_completions.d/graylanectl.fish

# The Debian package (docs/packaging.md): DEB_VERSION from git (see
# packaging/version.sh), DEB_ARCH from GOARCH; nfpm (a go.mod tool) packs it.
DIST        ?= dist
# Each is computed once, on first use (a plain := would run git and go env
# on every make invocation), unless set on the command line. make 4.3 does
# not export GOARCH=... from its command line to $(shell): it is passed on.
DEB_VERSION ?= $(eval DEB_VERSION := $(shell packaging/version.sh))$(DEB_VERSION)
DEB_ARCH    ?= $(eval DEB_ARCH := $(shell packaging/arch.sh $$(GOARCH=$(GOARCH) $(GO) env GOARCH)))$(DEB_ARCH)
DEB_STAGE   := $(DIST)/.deb-stage
# The generators (man pages, completions) run on this host even when
# GOARCH names another architecture.
HOST_GO     := GOOS= GOARCH= $(GO)

.PHONY: deb
deb: ## Build dist/graylane_<version>_<arch>.deb: binaries, unit, conffile, man pages, completions (docs/packaging.md)
	@[ -n "$(DEB_VERSION)" ] && [ -n "$(DEB_ARCH)" ] || { echo "make deb: no DEB_VERSION or DEB_ARCH: it needs a git checkout and a GOARCH Debian has (packaging/arch.sh)"; exit 1; }
	rm -rf $(DEB_STAGE) && mkdir -p $(DEB_STAGE)/man1 $(DEB_STAGE)/completions
	GOOS=linux CGO_ENABLED=0 $(GO) build -trimpath -buildmode=pie -ldflags "$(LDFLAGS) -s -w" -o $(DEB_STAGE)/ ./agent/cmd/graylane-agent ./ctl/cmd/graylanectl
	sed 's|@BINDIR@|/usr/bin|g' agent/systemd/graylane-agent.service > $(DEB_STAGE)/graylane-agent.service
	$(HOST_GO) run ./ctl/manpages/cmd/graylane-man $(DEB_STAGE)/man1
	gzip -9n $(DEB_STAGE)/man1/*.1
	for sh in bash zsh fish; do $(HOST_GO) run ./ctl/cmd/graylanectl completion $$sh > $(DEB_STAGE)/completions/graylanectl.$$sh || exit 1; done
	mv $(DEB_STAGE)/completions/graylanectl.zsh $(DEB_STAGE)/completions/_graylanectl
	{ printf 'graylane (%s) unstable; urgency=medium\n\n  * Built from commit %s.\n\n' "$(DEB_VERSION)" "$$(git rev-parse HEAD)"; \
	  printf ' -- %s  %s\n' "$$(sed -n 's/^maintainer: //p' packaging/nfpm.yaml)" "$$(git log -1 --format=%cD HEAD)"; } | gzip -9n > $(DEB_STAGE)/changelog.gz
	find $(DEB_STAGE) -exec touch -h -d @$$(git log -1 --format=%ct HEAD) {} +
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct HEAD) DEB_STAGE=$(DEB_STAGE) DEB_VERSION='$(DEB_VERSION)' DEB_ARCH=$(DEB_ARCH) \
		$(HOST_GO) tool nfpm pkg --packager deb --config packaging/nfpm.yaml --target $(DIST)/graylane_$(DEB_VERSION)_$(DEB_ARCH).deb
	rm -rf $(DEB_STAGE)

.PHONY: deps
deps: ## Install the Debian packages the tests and the demo need (as root)
	@[ "$$(id -u)" = 0 ] || { echo "make deps: not root: skipping the package check"; exit 0; }; \
	missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null && \
		for s in haproxy nginx; do case " $$missing " in *" $$s "*) systemctl disable --now -q $$s 2>/dev/null || true;; esac; done; \
	fi

.PHONY: generate
generate: ## Rebuild the BPF objects and Go bindings (needs clang-19)
	$(GO) generate ./bpf/...

.PHONY: check-generated
check-generated: generate ## Fail if the committed BPF objects and bindings are stale
	@git diff --exit-code --stat -- bpf/ || { echo "bpf/: generated files are stale: run 'make generate' and commit them"; exit 1; }

.PHONY: bpffs
bpffs: ## Mount the BPF file system at /sys/fs/bpf if it is not (as root)
	@[ "$$(id -u)" != 0 ] || mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

.PHONY: test
test: deps bpffs ## Run every test: unit (race detector), kernel packet tests, lab end to end
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$unformatted" ] || { echo "not gofmt-ed: $$unformatted"; exit 1; }
	$(GO) vet ./...
	$(GO) test -race -count=1 $(PURE_PKGS)
	$(GO) test -count=1 -timeout 40m ./...

.PHONY: golden
golden: ## Rewrite graylanectl's golden files from its current output (review the diff before committing)
	$(GO) test -count=1 $$($(GO) list -f '{{.ImportPath}} {{join .XTestImports " "}}' ./ctl/... | awk '/internal\/ctltest/ {print $$1}') -update

.PHONY: fuzz
fuzz: ## Fuzz the manifest parser, the config parser, the BPF programs and the capture redactor for a while
	$(GO) test -run XXX -fuzz FuzzParseFile -fuzztime 60s ./pkg/manifest
	$(GO) test -run XXX -fuzz FuzzParse -fuzztime 30s ./agent/config
	$(GO) test -run XXX -fuzz FuzzPrograms -fuzztime 60s ./pkg/datapath
	$(GO) test -run XXX -fuzz FuzzFrame -fuzztime 30s ./pkg/redact
	$(GO) test -run XXX -fuzz FuzzHeaderLen -fuzztime 30s ./pkg/capture
	$(GO) test -run XXX -fuzz FuzzMergeSource -fuzztime 30s ./pkg/capture

.PHONY: bench
bench: deps bpffs ## Per-packet, tracking, mirroring, apply and scrape costs; the capture's drain; lab throughput vs routing, iptables, nftables; cluster write and failover latency
	$(GO) test -run XXX -bench 'PerPacket|TrackingCost|MirrorCost' -benchtime 20000x ./pkg/datapath
	$(GO) test -run XXX -bench ApplyWeight ./pkg/datapath
	$(GO) test -run XXX -bench Sweep -benchtime 200x ./pkg/datapath
	$(GO) test -run XXX -bench CaptureDrain -benchtime 1x ./agent/captures
	$(GO) test -run XXX -bench RecordPath ./agent/captures
	$(GO) test -run XXX -bench ClusterSetWeight -benchtime 300x -v ./agent
	$(GO) test -run XXX -bench ClusterLeaderKill -benchtime 7x -v ./agent
	$(GO) test -run XXX -bench Scrape -benchtime 20x -v ./pkg/exporter
	$(GO) test -run XXX -bench . -benchtime 1x -timeout 30m ./internal/labbench

.PHONY: bench-builds
bench-builds: deps bpffs ## Per-packet costs of this tree's programs against another build, in one run: REV=<git revision> or OBJECT=<steer.o>
	@[ -n "$(REV)$(OBJECT)" ] || { echo "usage: make bench-builds REV=<git revision> | OBJECT=<a build of bpf/steer.c>"; exit 2; }
	@set -e; obj="$(OBJECT)"; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	if [ -z "$$obj" ]; then \
		git archive "$(REV)" bpf | tar -x -C "$$tmp"; \
		clang-19 -O2 -g -Wall -target bpfel -I/usr/include/x86_64-linux-gnu -c "$$tmp/bpf/steer.c" -o "$$tmp/steer.o"; \
		obj="$$tmp/steer.o"; \
	fi; \
	GRAYLANE_BENCH_OBJECT="$$obj" $(GO) test -run XXX -bench Builds -benchtime 20000x ./pkg/datapath

.PHONY: demo
demo: deps build ## Lab demo: three agents in a cluster; graylanectl moves the canary weight, traffic follows
	$(BIN)/graylane-demo --agent $(BIN)/graylane-agent --ctl $(BIN)/graylanectl

.PHONY: clean
clean: ## Remove build output and any lab left by a crashed run
	rm -rf $(BIN) $(DIST)
	-$(GO) run ./internal/netlab/cmd/graylane-lab cleanup
