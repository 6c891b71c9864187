package sdk

import "encoding/json"

// Callback ids of AM's IoT nodes (HiddenValueCallback "id" outputs).
const (
	CallbackPoPAuthentication = "jwt-pop-authentication"
	CallbackClientAssertion   = "client_assertion"
	CallbackPoPRegistration   = "jwt-pop-registration"
	CallbackSoftwareStatement = "software_statement"
)

// Callback types AM sends.
const (
	TypeHiddenValue = "HiddenValueCallback"
	TypeName        = "NameCallback"
	TypePassword    = "PasswordCallback"
	TypeTextInput   = "TextInputCallback"
)

// Callback is one callback of an authentication tree round, as AM sends it. Handlers fill
// Input[0].Value; the whole callback is echoed back to AM, handled or not.
type Callback struct {
	Type   string          `json:"type"`
	Output []CallbackEntry `json:"output,omitempty"`
	Input  []CallbackEntry `json:"input,omitempty"`
	// rest keeps fields the SDK does not know (for example _id) so they are echoed unchanged.
	rest map[string]json.RawMessage
}

// CallbackEntry is a name/value pair of a callback's output or input; values may be any JSON type.
type CallbackEntry struct {
	Name  string `json:"name"`
	Value any    `json:"value"`
}

// ID returns the HiddenValueCallback id (the output named "id"), or "" for other callbacks.
func (cb *Callback) ID() string {
	if cb.Type != TypeHiddenValue {
		return ""
	}
	s, _ := cb.output("id").(string)
	return s
}

// Challenge returns the output named "value" when it is a string: the nonce of the PoP callbacks.
func (cb *Callback) Challenge() string {
	s, _ := cb.output("value").(string)
	return s
}

func (cb *Callback) output(name string) any {
	for _, o := range cb.Output {
		if o.Name == name {
			return o.Value
		}
	}
	return nil
}

// SetInput writes v into the callback's first input, creating it if AM sent none.
func (cb *Callback) SetInput(v string) {
	if len(cb.Input) == 0 {
		cb.Input = []CallbackEntry{{Name: "IDToken1"}}
	}
	cb.Input[0].Value = v
}

// UnmarshalJSON keeps unknown fields so that they survive the echo.
func (cb *Callback) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	type plain Callback
	var p plain
	if err := json.Unmarshal(data, &p); err != nil {
		return err
	}
	*cb = Callback(p)
	delete(raw, "type")
	delete(raw, "output")
	delete(raw, "input")
	if len(raw) > 0 {
		cb.rest = raw
	}
	return nil
}

// MarshalJSON writes the callback with any unknown fields AM sent.
func (cb Callback) MarshalJSON() ([]byte, error) {
	out := make(map[string]any, len(cb.rest)+3)
	for k, v := range cb.rest {
		out[k] = v
	}
	out["type"] = cb.Type
	if cb.Output != nil {
		out["output"] = cb.Output
	}
	if cb.Input != nil {
		out["input"] = cb.Input
	}
	return json.Marshal(out)
}

// authPayload is the body of every /json/authenticate round, request and reply alike.
type authPayload struct {
	TokenID string `json:"tokenId,omitempty"`
	AuthID  string `json:"authId,omitempty"`
	// AuthIDDigest replaces authId through an IoT Gateway (the authId does not fit a datagram).
	AuthIDDigest string     `json:"auth_id_digest,omitempty"`
	Callbacks    []Callback `json:"callbacks,omitempty"`
	// answeredBy records, per callback, which handler filled it (-1: none); never sent.
	answeredBy []int
}
