// Package authz is imb's topic policy engine: it parses topics.yaml, compiles the
// policy for one authenticated subject into Grants, and answers every publish,
// subscribe and delivery question with the rule that decided.
//
// The policy is deny-by-default: a subject may do only what an allow rule grants,
// and a matching deny rule always wins over any allow rule. Parsing does all the
// validation (every error carries FILE:LINE:COL); Compile does all string work once
// per session, so that Grants.Allow, which runs for every message and every
// delivery, never allocates.
//
// The file format is described for operators in docs/policy.md.
package authz
