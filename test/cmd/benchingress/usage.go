package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// usage is what a process (with its live children: nginx's workers) spent: CPU
// time (user + system, from /proc/<pid>/stat) and read and write system calls
// (/proc/<pid>/io). Per request, it is the proxies' cost independent of how much
// of the shared machine they got.
type usage struct {
	cpu, sys     time.Duration // cpu includes sys
	reads, write int64
}

func (u usage) sub(v usage) usage {
	return usage{cpu: u.cpu - v.cpu, sys: u.sys - v.sys, reads: u.reads - v.reads, write: u.write - v.write}
}

// clockTick is USER_HZ, 100 on Linux.
const clockTick = 10 * time.Millisecond

// usageOf sums the usage of pid and its children.
func usageOf(pid int) usage {
	pids := append([]int{pid}, children(pid)...)
	var u usage
	for _, p := range pids {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/stat"); err == nil {
			s := string(b)
			if i := strings.LastIndexByte(s, ')'); i >= 0 {
				f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
				if len(f) > 12 {
					ut, _ := strconv.ParseInt(f[11], 10, 64)
					st, _ := strconv.ParseInt(f[12], 10, 64)
					u.cpu += time.Duration(ut+st) * clockTick
					u.sys += time.Duration(st) * clockTick
				}
			}
		}
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/io"); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				k, v, _ := strings.Cut(line, ": ")
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				switch k {
				case "syscr":
					u.reads += n
				case "syscw":
					u.write += n
				}
			}
		}
	}
	return u
}

// children lists the child processes of pid.
func children(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}
