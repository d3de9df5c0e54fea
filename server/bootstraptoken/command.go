package bootstraptoken

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/cluster-io/cluster/internal/joinapi"
	"github.com/cluster-io/cluster/internal/token"
)

// NewCommand returns `cluster token`, which talks to the cluster like
// kubectl does: --kubeconfig, else KUBECONFIG, else defaultKubeconfig.
func NewCommand(defaultKubeconfig string) *cobra.Command {
	var kubeconfig string
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage bootstrap tokens that let nodes join (kubeadm-style, short-lived)",
		Args:  cobra.NoArgs,
	}
	cmd.PersistentFlags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of a cluster admin (default: $KUBECONFIG, else "+defaultKubeconfig+")")
	client := func() (*kubernetes.Clientset, error) {
		path := kubeconfig
		if path == "" {
			path = os.Getenv("KUBECONFIG")
		}
		if path == "" {
			path = defaultKubeconfig
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w (pass --kubeconfig)", path, err)
		}
		cfg.Timeout = 15 * time.Second
		return kubernetes.NewForConfig(cfg)
	}

	var ttl time.Duration
	var description string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a bootstrap token and print it as K10<ca-hash>::<id>.<secret>",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl < 0 {
				return fmt.Errorf("--ttl %s: must not be negative (0 means the token never expires)", ttl)
			}
			c, err := client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			caHash, err := servedCAHash(ctx, c)
			if err != nil {
				return err
			}
			tok, _, err := Create(ctx, c, ttl, description, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), token.Token{CAHash: caHash, Secret: tok}.String())
			return nil
		},
	}
	create.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "How long the token is valid (0: forever)")
	create.Flags().StringVar(&description, "description", "", "What the token is for")

	list := &cobra.Command{
		Use:   "list",
		Short: "List bootstrap tokens (ids, expiry, description; never secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			infos, err := List(cmd.Context(), c)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tTTL\tEXPIRES\tUSAGES\tDESCRIPTION")
			now := time.Now()
			for _, i := range infos {
				ttl, expires := "<forever>", "<never>"
				if !i.Expires.IsZero() {
					expires = i.Expires.Format(time.RFC3339)
					ttl = "<expired>"
					if left := i.Expires.Sub(now); left > 0 {
						ttl = left.Round(time.Second).String()
					}
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", i.ID, ttl, expires, strings.Join(i.Usages, ","), i.Description)
			}
			return w.Flush()
		},
	}

	del := &cobra.Command{
		Use:   "delete ID [ID…]",
		Short: "Delete bootstrap tokens: they join nothing afterwards",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, ids []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			for _, id := range ids {
				if err := Delete(cmd.Context(), c, id); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "bootstrap token %s deleted\n", id)
			}
			return nil
		},
	}
	cmd.AddCommand(create, list, del)
	return cmd
}

// servedCAHash hashes the CA bundle exactly as the join API serves it to
// nodes, so the printed token pins what a node will be shown.
func servedCAHash(ctx context.Context, c *kubernetes.Clientset) (string, error) {
	body, err := c.RESTClient().Get().AbsPath(joinapi.CACertsPath).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("read the server CA from %s: %w", joinapi.CACertsPath, err)
	}
	return token.CAHash(body), nil
}
