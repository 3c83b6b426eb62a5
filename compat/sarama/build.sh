#!/usr/bin/env bash
# Builds ./scenarios offline against Debian's Go packages (GOPATH mode, no module downloads).
set -e
cd "$(dirname "$0")"
command -v go >/dev/null || apt-get install -y -q golang-go golang-github-shopify-sarama-dev
[ -d /usr/share/gocode/src/github.com/Shopify/sarama ] || apt-get install -y -q golang-github-shopify-sarama-dev
[ -d /usr/share/gocode/src/github.com/xdg-go/scram ] || apt-get install -y -q golang-github-xdg-go-scram-dev
# ../go holds what both Go programs share (GOPATH mode: a second GOPATH entry).
shared=../go/src/pybrokercompat/properties/properties.go
[ scenarios -nt scenarios.go ] && [ scenarios -nt "$shared" ] && exit 0
GO111MODULE=off GOPATH="/usr/share/gocode:$(cd ../go && pwd)" GOCACHE="${TMPDIR:-/tmp}/pybroker-compat-gocache" GOFLAGS= go build -o scenarios scenarios.go
