# Two commands on a fresh machine: `make demo` (install, fetch models, redact real footage) and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
REDACT := $(VENV)/bin/redact
ARCH   := $(shell uname -m)
# torch/torchvision pairs that install from the machine's local wheels (see README, "Installation")
TORCH_x86_64  := torch==2.14.1 torchvision==0.29.1
TORCH_aarch64 := torch==2.9.1 torchvision==0.24.1

.PHONY: setup models demo test lint clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q $(TORCH_$(ARCH))
	$(VENV)/bin/pip install -q -e '.[test,bench,ray]'
	touch $@

setup: $(VENV)/.installed

models: setup
	$(REDACT) models fetch

# Real footage shipped in benchmarks/demo_media (sources and licences in its README.md): a GRID talking-face clip
# with speech and a street scene built from real annotated car and face photos, redacted with the default models;
# results land in demo/ (which `make clean` deletes; the shipped media stay).
# The demo signs with a key of its own (demo/keys: a demo agency's key and local certificate authority), never the
# key in the user's state home.
DEMO_KEY := demo/keys/agency.key
demo: models
	$(PY) -m benchmarks.make_demo demo/street.mp4
	test -f $(DEMO_KEY) || $(REDACT) keys init --key $(DEMO_KEY) --organisation "Demo Police Department"
	$(REDACT) run demo/street.mp4 benchmarks/demo_media/bbaf2n.mpg -o demo/out --key $(DEMO_KEY)
	rm -rf demo/release
	$(REDACT) release demo/out --stem street --case DEMO-1 --requester "Demo Requester" -o demo/release \
	  --allow-unreviewed --key $(DEMO_KEY)
	$(REDACT) verify demo/release/DEMO-1-street.zip --trust-anchor demo/keys/ca.crt
	@echo "redacted videos, transcripts, plans and audit logs are in demo/out/; a release package (marked NOT"
	@echo "REVIEWED: nobody approved it), signed with the demo's key, is in demo/release/. A requester checks it with"
	@echo "  $(REDACT) verify demo/release/DEMO-1-street.zip --expect-key FINGERPRINT --trust-anchor demo/keys/ca.crt"
	@echo "(the fingerprint is printed above and in the package's report). Review and approve with:"
	@echo "  $(REDACT) review demo/out --key $(DEMO_KEY)   # open the URL it prints; then: $(REDACT) release demo/out ..."

test: models
	$(VENV)/bin/ruff check redact tests benchmarks
	$(VENV)/bin/pytest -q

lint: setup
	$(VENV)/bin/ruff check redact tests benchmarks

clean:
	rm -rf $(VENV) demo
