package main

import (
	"net/netip"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

var schemaIPPools = schema.GroupVersionResource{Group: "ironlb.io", Version: "v1alpha1", Resource: "ippools"}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
