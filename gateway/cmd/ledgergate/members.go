package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// membersHelp ends the help of the cluster commands.
const membersHelp = `
A member change is a cluster.reconfig tx signed with the admin key: it names
the whole new member set. It takes effect at a later height (the first
checkpoint at least 64 blocks on, plus one), which the command prints once
the change committed; until then the old set orders. One change at a time:
a change is refused while another is pending. A set has 4 to 64 gateways.
Removing or replacing a gateway that is down is the way to get rid of it;
a new gateway needs a new id (ids are never reused with another key).
docs/cluster.md walks through adding, removing and replacing a gateway.
`

// addHelp adds text to the end of fs's help.
func addHelp(fs *flagSet, text string) {
	u := fs.Usage
	fs.Usage = func() {
		u()
		fmt.Fprint(fs.Output(), text)
	}
}

// readMembers reads the member sets from the gateway's API.
func readMembers(ctx context.Context, c *client) (*api.Members, error) {
	var m api.Members
	if err := c.do(ctx, http.MethodGet, "/api/v1/cluster/members", "", nil, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// changeMembers submits a cluster.reconfig that makes the set edit
// returns from the set in force, and prints when it takes effect.
func changeMembers(ctx context.Context, e *env, admin adminFlags, what string, edit func([]ledger.Node) ([]ledger.Node, error)) error {
	c := admin.api.client()
	m, err := readMembers(ctx, c)
	if err != nil {
		return err
	}
	if m.Pending != nil {
		return fmt.Errorf("cluster %s: a member change is pending: the set of %s takes effect at height %d (the gateway is at %d); one change at a time, try again then",
			what, ids(m.Pending.Nodes), m.Pending.From, m.Height)
	}
	nodes, err := edit(slices.Clone(m.InForce.Nodes))
	if err != nil {
		return fmt.Errorf("cluster %s: %w", what, err)
	}
	if err := ledger.CheckMembers(nodes); err != nil {
		return fmt.Errorf("cluster %s: %w", what, err)
	}
	st, err := c.status(ctx)
	if err != nil {
		return err
	}
	rb, err := admin.sign(ctx, st.ChainID, ledger.Body{Kind: ledger.KindReconfig, ClusterReconfig: &ledger.ClusterReconfig{Nodes: nodes}})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "cluster %s: committed in block %d, tx %s\nnew members: %s (quorum %d)\ntakes effect at height %d; until then %s order\n",
		what, rb.Height, rb.TxID, ids(nodes), quorum(len(nodes)), ledger.MembersFrom(rb.Height), ids(m.InForce.Nodes))
	return nil
}

func ids(nodes []ledger.Node) string {
	s := make([]string, len(nodes))
	for i, n := range nodes {
		s[i] = n.ID
	}
	return strings.Join(s, ",")
}

// quorum is the quorum of a set of n (ledger.Epoch.Quorum).
func quorum(n int) int { return (n+(n-1)/3)/2 + 1 }

// newNode reads the flags that name a gateway to add.
func newNode(id, keyFile, addr string) (ledger.Node, error) {
	if !ledger.ValidID(id) {
		return ledger.Node{}, fmt.Errorf("invalid node id %q: 1 to 64 of A-Z a-z 0-9 . _ -", id)
	}
	der, err := device.LoadPublicKey(keyFile)
	if err != nil {
		return ledger.Node{}, err
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return ledger.Node{}, fmt.Errorf("--addr %q: want HOST:PORT, the address its peers dial: %w", addr, err)
	}
	return ledger.Node{ID: id, PublicKey: der, Addrs: []string{addr}}, nil
}

// index returns where id is in nodes, or an error naming the members.
func memberIndex(nodes []ledger.Node, id string) (int, error) {
	i := slices.IndexFunc(nodes, func(n ledger.Node) bool { return n.ID == id })
	if i < 0 {
		return 0, fmt.Errorf("%s is not a member: the members are %s", id, ids(nodes))
	}
	return i, nil
}

// notIn checks that n's id and key are no member's.
func notIn(nodes []ledger.Node, n ledger.Node) error {
	for _, m := range nodes {
		if m.ID == n.ID {
			return fmt.Errorf("%s is already a member", n.ID)
		}
		if string(m.PublicKey) == string(n.PublicKey) {
			return fmt.Errorf("the key of %s is member %s's key", n.ID, m.ID)
		}
	}
	return nil
}

func cmdClusterAdd(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "cluster add")
	addHelp(fs, membersHelp)
	id := fs.String("id", "", "the new gateway's node id (never used before in this chain)")
	key := fs.String("key", "", "the new gateway's node.pub (from 'ledgergate init --node-id ID' on it)")
	addr := fs.String("addr", "", "HOST:PORT its peers dial it at ([cluster] listen on it)")
	admin := addAdminFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "id", "key", "addr"); err != nil {
		return err
	}
	n, err := newNode(*id, *key, *addr)
	if err != nil {
		return err
	}
	return changeMembers(ctx, e, admin, "add "+*id, func(nodes []ledger.Node) ([]ledger.Node, error) {
		if err := notIn(nodes, n); err != nil {
			return nil, err
		}
		return append(nodes, n), nil
	})
}

func cmdClusterRemove(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "cluster remove")
	addHelp(fs, membersHelp)
	id := fs.String("id", "", "the node id of the gateway to remove")
	admin := addAdminFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "id"); err != nil {
		return err
	}
	return changeMembers(ctx, e, admin, "remove "+*id, func(nodes []ledger.Node) ([]ledger.Node, error) {
		i, err := memberIndex(nodes, *id)
		if err != nil {
			return nil, err
		}
		if len(nodes) <= 4 {
			return nil, fmt.Errorf("removing %s would leave %d gateways, and a cluster needs at least 4: add one first, or use 'cluster replace'", *id, len(nodes)-1)
		}
		return slices.Delete(nodes, i, i+1), nil
	})
}

func cmdClusterReplace(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "cluster replace")
	addHelp(fs, membersHelp)
	old := fs.String("id", "", "the node id of the gateway to replace (it may be down for good)")
	id := fs.String("with", "", "the new gateway's node id (never used before in this chain)")
	key := fs.String("key", "", "the new gateway's node.pub")
	addr := fs.String("addr", "", "HOST:PORT its peers dial it at")
	admin := addAdminFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "id", "with", "key", "addr"); err != nil {
		return err
	}
	n, err := newNode(*id, *key, *addr)
	if err != nil {
		return err
	}
	return changeMembers(ctx, e, admin, "replace "+*old+" with "+*id, func(nodes []ledger.Node) ([]ledger.Node, error) {
		i, err := memberIndex(nodes, *old)
		if err != nil {
			return nil, err
		}
		if err := notIn(nodes, n); err != nil {
			return nil, err
		}
		nodes[i] = n // its place in the primary order
		return nodes, nil
	})
}

func cmdClusterMembers(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "cluster members")
	addHelp(fs, membersHelp)
	apiURL := apiFlag(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	m, err := readMembers(ctx, apiURL.client())
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
			return fmt.Errorf("%w (a gateway of an older version, or a single node)", err)
		}
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	show := func(title string, s *api.MemberSet) {
		fmt.Fprintf(tw, "%s\tfrom height %d, %d gateways, quorum %d", title, s.From, len(s.Nodes), s.Quorum)
		if s.ChangeHeight > 0 {
			fmt.Fprintf(tw, " (change in block %d, tx %s)", s.ChangeHeight, s.ChangeTx)
		}
		fmt.Fprintln(tw)
		for _, n := range s.Nodes {
			sum := sha256.Sum256(n.PublicKey)
			fmt.Fprintf(tw, "  %s\t%s\tkey %x\n", n.ID, strings.Join(n.Addrs, ","), sum[:8])
		}
	}
	fmt.Fprintf(tw, "height\t%d\n", m.Height)
	show("in force", &m.InForce)
	if m.Pending != nil {
		show("pending", m.Pending)
	} else {
		fmt.Fprintln(tw, "pending\tnone")
	}
	return tw.Flush()
}
