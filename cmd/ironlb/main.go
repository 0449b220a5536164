// Command ironlb is ironlb's command line for operators:
//
//	ironlb migrate-metallb [-f FILE|DIR]... [--apply] [--strict] [-o FILE]
//	ironlb ensure-memberlist-secret [--namespace ironlb-system] [--name ironlb-memberlist]
//
// migrate-metallb reads MetalLB's configuration (YAML files, or the cluster of
// --kubeconfig when no file is given) and writes the equivalent ironlb objects
// (package migrate), with a report on stderr of every setting that changed
// form or has no equivalent. ensure-memberlist-secret creates the speakers'
// memberlist Secret if it does not exist (package memberlistsecret); the
// controller's Pod runs it as an init container.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ironlb/ironlb/internal/memberlistsecret"
	"github.com/ironlb/ironlb/migrate"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "ironlb:", err)
		os.Exit(1)
	}
}

// kubeFlags are the connection flags every subcommand shares.
type kubeFlags struct {
	kubeconfig string
	context    string
}

func (k *kubeFlags) add(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster configuration)")
	cmd.PersistentFlags().StringVar(&k.context, "context", "", "kubeconfig context (default: the current context)")
}

func (k *kubeFlags) config() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: k.context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("connecting to the cluster: %w", err)
	}
	cfg.UserAgent = "ironlb"
	return cfg, nil
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "ironlb",
		Short:         "ironlb's command line: migrate from MetalLB, bootstrap a cluster",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var k kubeFlags
	k.add(root)
	root.AddCommand(newMigrate(&k), newEnsureSecret(&k))
	return root
}

func newMigrate(k *kubeFlags) *cobra.Command {
	var (
		files     []string
		metallbNS string
		namespace string
		output    string
		apply     bool
		strict    bool
	)
	cmd := &cobra.Command{
		Use:   "migrate-metallb",
		Short: "Translate MetalLB's configuration into ironlb objects",
		Long: `Reads MetalLB's IPAddressPool, L2Advertisement, BGPAdvertisement, BGPPeer,
Community and BFDProfile objects (from the files given with -f, or from the
cluster) and writes the equivalent ironlb IPPools, BGPPeers and BGP password
Secrets as YAML (stdout, or -o FILE), or applies them (--apply). The report on
stderr lists every setting that changed form ("changed"), needs something done
by hand ("action"), or has no ironlb equivalent ("dropped").

Service annotations need no migration: ironlb honours metallb.io/* and
metallb.universe.tf/*, and keeps every address a Service already has.

Examples:
  ironlb migrate-metallb -f metallb-config.yaml > ironlb-config.yaml
  ironlb migrate-metallb --kubeconfig ~/.kube/config --apply`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			var m migrate.MetalLB
			opts := migrate.Options{Namespace: namespace}
			var cfg *rest.Config
			connect := func() error {
				if cfg != nil {
					return nil
				}
				var err error
				cfg, err = k.config()
				return err
			}
			if len(files) > 0 {
				for _, f := range files {
					if err := readPath(cmd.InOrStdin(), &m, f, cmd.ErrOrStderr()); err != nil {
						return err
					}
				}
			} else {
				if err := connect(); err != nil {
					return err
				}
				dyn, err := dynamic.NewForConfig(cfg)
				if err != nil {
					return err
				}
				if err := m.ReadCluster(ctx, dyn, metallbNS); err != nil {
					return err
				}
				client, err := kubernetes.NewForConfig(cfg)
				if err != nil {
					return err
				}
				opts.Secret = func(ns, name string) (*corev1.Secret, error) {
					return client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
				}
			}
			res, err := migrate.Convert(&m, opts)
			if err != nil {
				return err
			}
			if apply {
				if err := connect(); err != nil {
					return err
				}
				dyn, err := dynamic.NewForConfig(cfg)
				if err != nil {
					return err
				}
				objs, err := res.Objects()
				if err != nil {
					return err
				}
				if err := migrate.Apply(ctx, dyn, objs); err != nil {
					return err
				}
			}
			if output != "" || !apply {
				w := cmd.OutOrStdout()
				if output != "" && output != "-" {
					f, err := os.Create(output)
					if err != nil {
						return err
					}
					defer f.Close()
					w = f
				}
				if err := res.WriteYAML(w); err != nil {
					return err
				}
			}
			if err := res.WriteReport(cmd.ErrOrStderr()); err != nil {
				return err
			}
			if strict && (res.Has(migrate.Dropped) || res.Has(migrate.Action)) {
				return errors.New("--strict: some settings have no ironlb equivalent or need action (see the report)")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&files, "filename", "f", nil, "MetalLB objects: a YAML/JSON file, a directory of them, or - for stdin (repeatable); default: read the cluster")
	f.StringVar(&metallbNS, "metallb-namespace", "metallb-system", "namespace of MetalLB's objects in the cluster (\"\" for all namespaces)")
	f.StringVar(&namespace, "namespace", "ironlb-system", "ironlb's namespace, where BGP password Secrets are written")
	f.StringVarP(&output, "output", "o", "", "write the YAML to this file (default: stdout; with --apply: not written)")
	f.BoolVar(&apply, "apply", false, "create or update the objects in the cluster (server-side apply)")
	f.BoolVar(&strict, "strict", false, "exit with an error when any setting has no equivalent or needs action")
	return cmd
}

// readPath reads one -f argument: "-" (stdin), a file, or the .yaml/.yml/.json
// files of a directory (sorted, not recursive).
func readPath(stdin io.Reader, m *migrate.MetalLB, path string, report io.Writer) error {
	var skipped []string
	read := func(r io.Reader, name string) error {
		s, err := m.Read(r, name)
		skipped = append(skipped, s...)
		return err
	}
	defer func() {
		for _, s := range skipped {
			fmt.Fprintf(report, "skipped %s: not a MetalLB configuration object\n", s)
		}
	}()
	if path == "-" {
		return read(stdin, "stdin")
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return read(f, path)
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
			names = append(names, filepath.Join(path, e.Name()))
		}
	}
	slices.Sort(names)
	for _, n := range names {
		f, err := os.Open(n)
		if err != nil {
			return err
		}
		err = read(f, n)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func newEnsureSecret(k *kubeFlags) *cobra.Command {
	var namespace, name string
	cmd := &cobra.Command{
		Use:   "ensure-memberlist-secret",
		Short: "Create the speakers' memberlist Secret if it does not exist",
		Long: `Creates Secret <namespace>/<name> with 32 random bytes (key "secretkey") unless it
exists; an existing Secret is never changed. The speakers mount it and derive
their gossip encryption key from it. ironlb-controller's Pod runs this as an
init container, so the first installation creates the Secret and upgrades keep
it. To rotate the key, delete the Secret, then restart the controller and the
speakers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := k.config()
			if err != nil {
				return err
			}
			client, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return err
			}
			created, err := memberlistsecret.Ensure(cmd.Context(), client, namespace, name)
			if err != nil {
				return err
			}
			if created {
				fmt.Fprintf(cmd.OutOrStdout(), "created Secret %s/%s\n", namespace, name)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "Secret %s/%s exists; left as it is\n", namespace, name)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&namespace, "namespace", "ironlb-system", "namespace of the Secret (where the speakers run)")
	cmd.Flags().StringVar(&name, "name", "ironlb-memberlist", "name of the Secret")
	return cmd
}
