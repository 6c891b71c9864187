package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// procStat is a process's resource use read from /proc.
type procStat struct {
	RSSBytes   int64
	CPUSeconds float64 // user + system
}

// readProc reads /proc/PID/stat and /proc/PID/statm.
func readProc(pid int) (procStat, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, fmt.Errorf("read /proc/%d/stat: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces: the
	// numeric fields start after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	// After ')' come state (field 3) ...; utime is field 14, stime field 15.
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	statm, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return procStat{}, fmt.Errorf("read /proc/%d/statm: %w", pid, err)
	}
	m := strings.Fields(string(statm))
	if len(m) < 2 {
		return procStat{}, fmt.Errorf("/proc/%d/statm: %q", pid, statm)
	}
	pages, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/statm: %w", pid, err)
	}
	return procStat{RSSBytes: pages * int64(os.Getpagesize()), CPUSeconds: float64(ut+st) / clockTicks}, nil
}
