package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// StartBIRD runs BIRD 2 in host's namespace with conf as its configuration, in the
// foreground as a lab process (Close stops it), with its control socket, pid file and
// log in Dir(). It waits (at most 10s, or ctx) until birdc answers on the socket.
// Use it for a second router implementation beside FRR, or for a BGP peer on a node.
func (l *Lab) StartBIRD(ctx context.Context, host, conf string) (*Process, error) {
	if err := l.checkHost(host); err != nil {
		return nil, err
	}
	base := filepath.Join(l.dir, "bird-"+host)
	if err := os.WriteFile(base+".conf", []byte(conf), 0o644); err != nil {
		return nil, err
	}
	p, err := l.Start(host, base+".log", "bird", "-f", "-c", base+".conf", "-s", base+".ctl", "-P", base+".pid")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if _, err := l.Birdc(ctx, host, "show status"); err == nil {
			return p, nil
		}
		select {
		case <-p.Done():
			return nil, fmt.Errorf("lab: bird in %s exited: %v\n%s", host, p.Err(), tail(p.LogPath(), 2000))
		case <-ctx.Done():
			_ = p.Stop()
			return nil, errors.Join(errors.New("lab: bird did not answer on its control socket"), ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Birdc runs one birdc command against the BIRD started in host by StartBIRD.
func (l *Lab) Birdc(ctx context.Context, host string, cmd ...string) (string, error) {
	sock := filepath.Join(l.dir, "bird-"+host+".ctl")
	return l.Exec(ctx, host, append([]string{"birdc", "-s", sock}, cmd...)...)
}
