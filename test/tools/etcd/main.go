// Command etcd is a minimal etcd server for the lab, built from go.etcd.io/etcd/server/v3/embed.
package main

import _ "go.etcd.io/etcd/server/v3/embed"

func main() {}
