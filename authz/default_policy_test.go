package authz

import (
	"strings"
	"testing"
)

// TestDefaultPolicy walks the thermostat story of the default topics.yaml: the
// thermostat reports and receives commands, the manufacturer's cloud service
// reads everything and commands any thing, a gateway acts for the things
// behind it, and nobody else gets anything.
func TestDefaultPolicy(t *testing.T) {
	pol, err := Load("../topics.yaml")
	if err != nil {
		t.Fatalf("default topics.yaml: %v", err)
	}
	if pol.AllowsAnonymous() {
		t.Error("default policy lets clients without a token connect")
	}
	if !strings.HasPrefix(pol.Summary(), "../topics.yaml: valid: ") {
		t.Errorf("Summary() = %q", pol.Summary())
	}
	thermostat := Subject{ID: "thermostat-1", ClientID: "thermostat-1", Scopes: []string{"publish", "subscribe"}}
	cloud := Subject{ID: "cloud-app", ClientID: "cloud-app-worker-1", Scopes: []string{"fleet:read", "fleet:command"}}
	gateway := Subject{ID: "gw-1", ClientID: "gw-1", Scopes: []string{"publish", "subscribe"},
		Claims: map[string]any{"thingType": "gateway", "things": []any{"sensor-7", "sensor-8"}}}
	fakeGateway := Subject{ID: "gw-2", ClientID: "gw-2", Scopes: []string{"publish", "subscribe"},
		Claims: map[string]any{"thingType": "device", "things": []any{"sensor-7"}}}
	monitor := Subject{ID: "ops", ClientID: "ops", Scopes: []string{"broker:monitor"}}
	anonymous := Subject{ClientID: "x", Anonymous: true}

	runAllowCases(t, pol, []allowCase{
		{"thermostat telemetry", thermostat, Publish, "things/thermostat-1/telemetry/temperature", 1, false, true, "thing-telemetry", ""},
		{"thermostat telemetry qos 2 refused", thermostat, Publish, "things/thermostat-1/telemetry/temperature", 2, false, false, "thing-telemetry", ""},
		{"thermostat telemetry not retained", thermostat, Publish, "things/thermostat-1/telemetry/temperature", 0, true, false, "thing-telemetry", ""},
		{"thermostat retained state", thermostat, Publish, "things/thermostat-1/state", 1, true, true, "thing-state", ""},
		{"thermostat cannot speak for another", thermostat, Publish, "things/thermostat-2/state", 0, false, false, "", ""},
		{"thermostat commands", thermostat, Subscribe, "things/thermostat-1/commands/#", 1, false, true, "thing-commands", ""},
		{"thermostat receives a command", thermostat, Receive, "things/thermostat-1/commands/setpoint", 1, false, true, "thing-commands", ""},
		{"thermostat cannot read others' commands", thermostat, Subscribe, "things/+/commands/#", 1, false, false, "", ""},
		{"thermostat cannot read telemetry", thermostat, Subscribe, "things/thermostat-1/telemetry/#", 0, false, false, "", ""},
		{"thermostat cannot publish firmware", thermostat, Publish, "things/thermostat-1/firmware/v2", 0, false, false, "no-device-firmware", ""},
		{"cloud reads all telemetry", cloud, Subscribe, "things/+/telemetry/#", 1, false, true, "fleet-read", ""},
		{"cloud reads all state", cloud, Subscribe, "$share/analytics/things/+/state", 1, false, true, "fleet-read", ""},
		{"cloud receives telemetry", cloud, Receive, "things/thermostat-1/telemetry/temperature", 1, false, true, "fleet-read", ""},
		{"cloud commands a thing", cloud, Publish, "things/thermostat-1/commands/setpoint", 1, false, true, "fleet-command", ""},
		{"cloud cannot fake telemetry", cloud, Publish, "things/thermostat-1/telemetry/temperature", 0, false, false, "", ""},
		{"cloud cannot read everything", cloud, Subscribe, "#", 0, false, false, "", ""},
		{"cloud cannot read $SYS", cloud, Subscribe, "$SYS/#", 0, false, false, "", ""},
		{"gateway for sensor-7", gateway, Publish, "things/sensor-7/telemetry/temperature", 1, false, true, "gateway-telemetry-and-state", ""},
		{"gateway retained state for sensor-8", gateway, Publish, "things/sensor-8/state", 1, true, true, "gateway-telemetry-and-state", ""},
		{"gateway commands for sensor-8", gateway, Subscribe, "things/sensor-8/commands/#", 1, false, true, "gateway-commands", ""},
		{"gateway own telemetry", gateway, Publish, "things/gw-1/telemetry/uptime", 0, false, true, "thing-telemetry", ""},
		{"gateway not for a stranger", gateway, Publish, "things/sensor-9/telemetry/temperature", 0, false, false, "", ""},
		{"gateway no firmware", gateway, Publish, "things/sensor-7/firmware/x", 0, false, false, "no-device-firmware", ""},
		{"device claiming things is no gateway", fakeGateway, Publish, "things/sensor-7/telemetry/temperature", 0, false, false, "", ""},
		{"monitor reads $SYS", monitor, Subscribe, "$SYS/broker/clients/+", 0, false, true, "broker-monitor", ""},
		{"anonymous gets nothing", anonymous, Subscribe, "things/+/state", 0, false, false, "", ""},
	})
}
