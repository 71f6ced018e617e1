package egress

import "strings"

// expand fills the placeholders {chain}, {device} and {stream} of a topic
// or subject template with m's values, each passed through clean.
func expand(tmpl string, m *Message, clean func(string) string) string {
	return strings.NewReplacer("{chain}", clean(m.ChainID), "{device}", clean(m.Device), "{stream}", clean(m.Stream)).Replace(tmpl)
}

// natsToken makes an id a single NATS subject token: ids may hold '.',
// the token separator. The message body keeps the true value.
func natsToken(s string) string { return strings.ReplaceAll(s, ".", "_") }

// same leaves an id as it is: ids are safe as MQTT topic levels.
func same(s string) string { return s }

// natsWildcard is the subject filter of the messages a subject template
// makes: each placeholder becomes '*' (config validation makes sure each
// fills a whole token).
func natsWildcard(tmpl string) string {
	return strings.NewReplacer("{chain}", "*", "{device}", "*", "{stream}", "*").Replace(tmpl)
}
