package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ledgergate/ledgergate/webui"
)

// cmdWebUIHashPassword prints the bcrypt hash of a password read from
// stdin, for webui.password_hash.
func cmdWebUIHashPassword(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "webui hash-password")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	line, err := bufio.NewReader(e.stdin).ReadString('\n')
	if err != nil && line == "" {
		return errors.New("read the password from stdin: nothing was given (e.g. read -rs PW && echo \"$PW\" | ledgergate webui hash-password)")
	}
	h, err := webui.HashPassword(strings.TrimRight(line, "\r\n"))
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, h)
	return nil
}
