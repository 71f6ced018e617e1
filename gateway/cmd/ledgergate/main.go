// Command ledgergate is the gateway and its command-line tools.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

// version is set at build time: -ldflags "-X main.version=...".
var version = "dev"

// command is one subcommand.
type command struct {
	name    string // "device enroll"
	usage   string // arguments after the name
	summary string
	run     func(ctx context.Context, env *env, args []string) error
}

// env is what commands read and write besides their flags.
type env struct {
	stdout, stderr io.Writer
	stdin          io.Reader
	// configPath replaces config.DefaultPath if configSet: main takes it
	// from $LEDGERGATE_CONFIG ("" reads no default file).
	configPath string
	configSet  bool
}

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

// errUsage marks a usage error; the command's help has been printed.
var errUsage = errors.New("usage")

func commands() []command {
	return []command{
		{"run", "[--dev] [--config FILE] [--data DIR] [--listen ADDR] [--mqtt ADDR]", "run the gateway", cmdRun},
		{"init", "[--data DIR] [--chain-id ID] [--admin-id ID] [--admin-key FILE]\n" +
			"       ledgergate init --node-id ID [--data DIR]   (or --key-only: the node key only)\n" +
			"       ledgergate init --genesis FILE [--data DIR] [--node-id ID]",
			"create a data directory: a new single-node chain, or a node key (--node-id ID) that then joins a chain (--genesis; with --node-id, as a gateway that 'cluster add' adds)", cmdInit},
		{"genesis new", "--chain-id ID --node ID,HOST:PORT,KEY.pub... --admin NAME.pub... [--admin-id ID] --out FILE [--force]",
			"build the genesis of a chain of several gateways from their node.pub files", cmdGenesisNew},
		{"genesis show", "FILE", "print a genesis: chain id, hash, n, f, quorum, the nodes and admins with key fingerprints", cmdGenesisShow},
		{"tpm info", "[--config FILE] [--device DEV | --socket SOCK] [--handle H]", "show the TPM: manufacturer, firmware, algorithms, whether the node key exists", cmdTPMInfo},
		{"tpm init", "[--config FILE] [--device DEV | --socket SOCK] [--handle H] [--auth-file F]", "create the node key in the TPM (kept at a persistent handle; it never leaves the TPM)", cmdTPMInit},
		{"tpm pubkey", "[--config FILE] [--device DEV | --socket SOCK] [--handle H]", "print the node key's public key (PEM)", cmdTPMPubkey},
		{"seeds check", "[--config FILE]", "query the seed zones, validate every answer up to the trust anchor, and print each link of the chain and the peers, or why an answer is bogus", cmdSeedsCheck},
		{"webui hash-password", "< PASSWORD", "print the bcrypt hash of the operator password read from stdin, for webui.password_hash", cmdWebUIHashPassword},
		{"token create", "--name N --scope S [--scope S...] [--expires D] [--data DIR | --config FILE]",
			"make an API token with the scopes given and print it, once (docs/api.md, Authentication)", cmdTokenCreate},
		{"token list", "[--data DIR | --config FILE]", "list the API tokens: id, name, scopes, state, created, expires, last used", cmdTokenList},
		{"token revoke", "ID [--data DIR | --config FILE]", "revoke an API token for good; a running gateway refuses it from its next request on", cmdTokenRevoke},
		{"version", "", "print the version", cmdVersion},
		{"device keygen", "--alg es256|ed25519 --out NAME", "make a device's keys: signing NAME and NAME.pub, encryption NAME.enc and NAME.enc.pub", cmdDeviceKeygen},
		{"device enroll", "--id ID --pubkey NAME.pub [--enc-pubkey NAME.enc.pub] [--model M] [--group G,...]", "enroll a device (signed with the admin key)", cmdDeviceEnroll},
		{"device keys", "--id ID", "look up a device's current keys and check the proof against the genesis", cmdDeviceKeys},
		{"device revoke", "--id ID [--reason TEXT]", "revoke a device for good (signed with the admin key)", cmdDeviceRevoke},
		{"device list", "", "list the enrolled devices", cmdDeviceList},
		{"device sign", "--key NAME --id ID [--seq N] [--stream S] [--in FILE] --out MSG", "sign a data record as a device, offline (seq: the next of NAME.seq unless given)", cmdDeviceSign},
		{"device token", "--key NAME --id ID [--ttl D]", "print an MQTT password for the device: a token signed by its key", cmdDeviceToken},
		{"device publish", "--key NAME --id ID [--seq N] [--broker URL] [--stream S] [--in FILE]", "sign a record and publish it over MQTT; waits for the commit (seq: the next of NAME.seq, resynced from the gateway on a replay, unless given)", cmdDevicePublish},
		{"device rekey", "--key OLD --id ID --new-key NEW [--no-enc-key] [--seq N]",
			"replace a device's keys: sign with OLD a re-key to NEW's keys (NEW's public key and NEW.enc.pub; make them with 'device keygen --out NEW'), submit it and wait for the commit; from then on the ledger refuses OLD: use NEW", cmdDeviceRekey},
		{"config publish", "--target ID|group:G --file F [--version N]", "seal a configuration to the device (or every member of the group) and the operators, store it, and record its hash and version on the ledger", cmdConfigPublish},
		{"config verify", "--device ID --file F", "check whether F is the device's current configuration, as the device would (prints accepted or why not)", cmdConfigVerify},
		{"config history", "--device ID", "every configuration version that applied to the device, and what it reported applying", cmdConfigHistory},
		{"config diff", "--device ID --from V1 --to V2", "the differences between two versions of a device's configuration (needs the operators' key)", cmdConfigDiff},
		{"config drift", "", "the devices whose last report is not their current configuration", cmdConfigDrift},
		{"vendor keygen", "--out NAME", "make a vendor's maintenance key pair (its public key is built into the devices)", cmdVendorKeygen},
		{"vendor enroll", "--id V --pubkey NAME.pub --models M1,M2", "register a vendor and the models it makes (signed with the admin key)", cmdVendorEnroll},
		{"fleet batch create", "--vendor-key K --vendor V --batch B --model M --keys DIR [--group G,...]", "publish a batch of devices (DIR/ID.pub each) signed with the vendor key (docs/fleet.md)", cmdFleetBatchCreate},
		{"fleet batch approve", "--batch B", "approve a batch: its devices enroll at their first connection (owner, signed with the admin key)", cmdFleetBatchApprove},
		{"fleet batch revoke", "--batch B [--reason TEXT]", "end claims from a batch; devices it enrolled stay (owner, signed with the admin key)", cmdFleetBatchRevoke},
		{"fleet batch list", "[--batch B]", "list the batches (status, claimed), or a batch's devices", cmdFleetBatchList},
		{"fleet token create", "[--device ID] [--model M] [--group G,...] [--expires D]", "make a one-time enrollment token; prints its secret, once (the ledger holds its hash)", cmdFleetTokenCreate},
		{"device claim", "--key NAME --id ID (--batch B | --secret S [--model M] [--group G,...])", "enroll this device from its batch, or with a one-time token and its own new key", cmdDeviceClaim},
		{"reviewer enroll", "--id R --pubkey NAME.pub", "register a reviewer who may vote on releases (signed with the admin key)", cmdReviewerEnroll},
		{"firmware publish", "--vendor-key K --vendor V --model M --version N --image F [--expires D]", "sign a release manifest with the vendor key, store the image and publish the manifest", cmdFirmwarePublish},
		{"firmware vote", "--reviewer-key K --reviewer R --model M --version N --good|--bad [--reason TEXT]", "vote on a release", cmdFirmwareVote},
		{"firmware approve", "--group G --model M --version N", "approve a release for a group (owner, signed with the admin key)", cmdFirmwareApprove},
		{"firmware revoke", "--model M --version N [--group G] [--reason TEXT]", "withdraw a release from a group, or from every group", cmdFirmwareRevoke},
		{"firmware policy", "--group G [--require-approval] [--votes N] [--waves 10,50,100] [--max-failures P]", "set what a group may install and how it rolls out", cmdFirmwarePolicy},
		{"firmware status", "[--model M]", "releases of a model: votes, approvals, rollout per group and wave, failures", cmdFirmwareStatus},
		{"firmware verify", "--device ID --image F --vendor-pubkey K [--version N]", "check an image as the device would (prints installable or why not)", cmdFirmwareVerify},
		{"sim", "--devices N --rate R --duration D [--broker URL[,URL...]] [--qos 1] | --presign --inflight K --count N [--no-enroll] [--gateway-pid PID]",
			"enroll N simulated devices and run them over MQTT; prints throughput, PUBACK latency and (--presign) the broker's CPU per message", cmdSim},
		{"records", "[--api URL] [--token T] [--device D] [--stream S] [--from T] [--to T] [--limit N | --all] [--order asc|desc] [--format table|json|ndjson|csv]",
			"list or export committed records, newest first, following the API's pages", cmdRecords},
		{"policy show", "[--api URL] [--height N] [--json]", "show the policy in force (docs/policy.md), after the block at a height with --height", cmdPolicyShow},
		{"policy set", "--policy FILE", "set the chain's policy from a JSON file (signed with the admin key); waits for the commit", cmdPolicySet},
		{"policy history", "[--api URL] [--json]", "every policy change, with the block it committed in", cmdPolicyHistory},
		{"policy test", "--policy FILE --records FILE", "evaluate a policy against sample records before it is set: each verdict and the rule that refused", cmdPolicyTest},
		{"cluster members", "[--api URL]", "show the member set in force, and a pending change and the height it takes effect at", cmdClusterMembers},
		{"cluster add", "--id ID --key NODE.pub --addr HOST:PORT", "add a gateway to the members (signed with the admin key); prints the height the new set takes effect at", cmdClusterAdd},
		{"cluster remove", "--id ID", "remove a gateway from the members (signed with the admin key); at least 4 stay", cmdClusterRemove},
		{"cluster replace", "--id OLD --with NEW --key NODE.pub --addr HOST:PORT", "replace a gateway (a dead one) by a new one with a new id and key, in its place (signed with the admin key)", cmdClusterReplace},
		{"tx submit", "MSG [--receipt-out FILE]", "submit a signed tx and wait for its receipt", cmdTxSubmit},
		{"receipt verify", "[--genesis FILE] RECEIPT", "verify a receipt offline against the genesis (default: that of the installed gateway, DATA/genesis.json)", cmdReceiptVerify},
		{"ledger verify", "[--data DIR]", "check the whole chain: hashes, Merkle roots, certificates, signatures, and say what retention pruned (also on a running gateway); on a gateway that joined from a snapshot, from that snapshot on, and its proof", cmdLedgerVerify},
		{"ledger reindex", "[--data DIR]", "rebuild the SQLite index from the block log (gateway stopped)", cmdLedgerReindex},
		{"backup", "--out FILE [--with-keys] [--force] [--data DIR | --config FILE]",
			"back up a gateway's data directory, running or stopped: the block log up to its height at the start, the index, the genesis, the other files and the configuration; private keys only with --with-keys (docs/operations.md)", cmdBackup},
		{"restore", "FILE [--data DIR | --config FILE] [--force] [--no-verify]",
			"restore a backup into an empty data directory: checks every checksum, writes the block log and the index, and verifies the chain as ledger verify does; a damaged backup writes nothing", cmdRestore},
	}
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "run" {
		if err := raiseTimerSlack(); err != nil {
			fmt.Fprintf(os.Stderr, "ledgergate run: %v; the gateway runs on, with more CPU at low rates\n", err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	e := &env{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin}
	e.configPath, e.configSet = os.LookupEnv(configEnv)
	code := run(ctx, e, os.Args[1:])
	stop()
	os.Exit(code)
}

// run dispatches args to a command and returns the exit code.
func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(e.stdout, args)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, rest, ok := find(args)
	if !ok {
		if group := groupCommands(args[0]); len(group) > 0 {
			fmt.Fprintf(e.stderr, "ledgergate %s: want one of:\n", args[0])
			listCommands(e.stderr, group)
			return 2
		}
		fmt.Fprintf(e.stderr, "ledgergate: unknown command %q\n\n", strings.Join(args[:min(2, len(args))], " "))
		usage(e.stderr, nil)
		return 2
	}
	err := cmd.run(ctx, e, rest)
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.As(err, &ee):
		fmt.Fprintf(e.stderr, "ledgergate %s: %v\n", cmd.name, ee.err)
		return ee.code
	default:
		fmt.Fprintf(e.stderr, "ledgergate %s: %v\n", cmd.name, err)
		return 1
	}
}

// find matches the longest command name at the start of args.
func find(args []string) (command, []string, bool) {
	for _, c := range commands() {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == c.name {
			return c, args[len(words):], true
		}
	}
	return command{}, nil, false
}

// groupCommands returns the commands whose name starts with word, as in
// "device" for "device keygen", "device enroll", ...
func groupCommands(word string) []command {
	var group []command
	for _, c := range commands() {
		if strings.HasPrefix(c.name, word+" ") {
			group = append(group, c)
		}
	}
	return group
}

// listCommands prints cs as a table: names in a column as wide as the
// longest.
func listCommands(w io.Writer, cs []command) {
	width := 0
	for _, c := range cs {
		width = max(width, len(c.name))
	}
	for _, c := range cs {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.summary)
	}
}

func usage(w io.Writer, _ []string) {
	fmt.Fprintf(w, `ledgergate secures IoT devices with a permissioned ledger.

Usage: ledgergate COMMAND [flags]

Commands:
`)
	listCommands(w, commands())
	fmt.Fprintf(w, `
Run 'ledgergate COMMAND --help' for a command's flags.
Quick start: 'ledgergate run --dev' starts a single node with its data in ./ledgergate-data.
`+gatewayFlagsHelp)
}

// newFlags makes a command's flag set with a help text that names the command.
func newFlags(e *env, name string) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), e: e}
	fs.SetOutput(e.stderr)
	var c command
	for _, x := range commands() {
		if x.name == name {
			c = x
		}
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: ledgergate %s %s\n\n%s.\n", c.name, c.usage, upperFirst(c.summary))
		if hasFlags(fs.FlagSet) {
			fmt.Fprintf(fs.Output(), "\nFlags:\n")
			fs.PrintDefaults()
		}
		if fs.gw.config != nil {
			fmt.Fprint(fs.Output(), gatewayFlagsHelp)
		}
	}
	return fs
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// parse parses flags, allowing positional arguments before and after
// them, and resolves the gateway flags not given (flagSet.resolve); it
// returns the positional arguments.
func parse(fs *flagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, fs.resolve()
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// usageError prints msg and the command's help; it returns errUsage.
func usageError(fs *flagSet, msg string) error {
	fmt.Fprintf(fs.Output(), "ledgergate %s: %s\n", fs.Name(), msg)
	fs.Usage()
	return errUsage
}

// only reports flags set besides names as a usage error; when says in
// which case they do not belong, as in "with --key-only".
func only(fs *flagSet, when string, names ...string) error {
	var extra []string
	fs.Visit(func(f *flag.Flag) {
		if !slices.Contains(names, f.Name) {
			extra = append(extra, "--"+f.Name)
		}
	})
	if len(extra) > 0 {
		return usageError(fs, strings.Join(extra, ", ")+" cannot be used "+when)
	}
	return nil
}

// need reports missing required flags as a usage error.
func need(fs *flagSet, names ...string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var missing []string
	for _, n := range names {
		if !set[n] {
			missing = append(missing, "--"+n)
		}
	}
	if len(missing) > 0 {
		fmt.Fprintf(fs.Output(), "ledgergate %s: missing %s\n", fs.Name(), strings.Join(missing, ", "))
		fs.Usage()
		return errUsage
	}
	return nil
}

func cmdVersion(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "version")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "ledgergate %s\n", version)
	return nil
}
