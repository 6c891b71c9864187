package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"imb/examples/internal/link"
)

// Set-points a command may ask for, in °C.
const (
	minSetpoint = 5
	maxSetpoint = 30
)

// thermostat is the simulated device: a room that warms or cools half a degree per reading towards
// the set-point.
type thermostat struct {
	id          string
	setpoint    float64
	temperature float64
	commands    chan []byte
}

func newThermostat(id string, setpoint float64) *thermostat {
	return &thermostat{id: id, setpoint: setpoint, temperature: 18, commands: make(chan []byte, 64)}
}

func (t *thermostat) commandFilter() string  { return "things/" + t.id + "/commands/#" }
func (t *thermostat) telemetryTopic() string { return "things/" + t.id + "/telemetry/temperature" }
func (t *thermostat) stateTopic() string     { return "things/" + t.id + "/state" }

// receive queues a command for the loop. It runs on the MQTT client's goroutine, so it never blocks: a
// command that finds the queue full is dropped (the cloud sends set-points again).
func (t *thermostat) receive(_ string, payload []byte) {
	select {
	case t.commands <- append([]byte(nil), payload...):
	default:
	}
}

// Telemetry is one reading.
type Telemetry struct {
	Seq         int       `json:"seq"`
	Temperature float64   `json:"temperature"`
	Setpoint    float64   `json:"setpoint"`
	Unit        string    `json:"unit"`
	Time        time.Time `json:"time"`
}

// State is what the thermostat is doing; it is published retained.
type State struct {
	Setpoint float64 `json:"setpoint"`
	Heating  bool    `json:"heating"`
}

// Command is what the cloud may ask.
type Command struct {
	Setpoint *float64 `json:"setpoint"`
}

// loop publishes telemetry every interval, applies commands as they come, and stops when ctx ends,
// the connection ends, or count readings are out.
func (t *thermostat) loop(ctx context.Context, out io.Writer, conn link.Link, interval time.Duration, count int) error {
	if err := t.publishState(ctx, out, conn); err != nil {
		return err
	}
	fmt.Fprintf(out, "Publishing telemetry to %s every %s (Ctrl-C to stop)\n", t.telemetryTopic(), interval)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for seq := 1; ; {
		if err := t.publishReading(ctx, out, conn, seq); err != nil {
			return err
		}
		if seq == count {
			fmt.Fprintf(out, "Stopped after %d messages\n", count)
			return nil
		}
		seq++
	wait:
		for {
			select {
			case <-ctx.Done():
				fmt.Fprintf(out, "Stopped after %d messages\n", seq-1)
				return nil
			case <-conn.Done():
				return fmt.Errorf("connection to imb ended: %w", conn.Err())
			case cmd := <-t.commands:
				if err := t.obey(ctx, out, conn, cmd); err != nil {
					if ctx.Err() != nil {
						continue // interrupted while answering: the next pass reports the stop
					}
					return err
				}
			case <-ticker.C:
				break wait
			}
		}
	}
}

func (t *thermostat) publishReading(ctx context.Context, out io.Writer, conn link.Link, seq int) error {
	step := math.Max(-0.5, math.Min(0.5, t.setpoint-t.temperature))
	t.temperature = math.Round((t.temperature+step)*10) / 10
	payload, err := json.Marshal(Telemetry{Seq: seq, Temperature: t.temperature, Setpoint: t.setpoint, Unit: "C", Time: time.Now().UTC().Truncate(time.Millisecond)})
	if err != nil {
		return err
	}
	if err := conn.Publish(ctx, t.telemetryTopic(), false, payload); err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while publishing: the loop reports the stop
		}
		return err
	}
	fmt.Fprintf(out, "Telemetry: %s\n", payload)
	return nil
}

func (t *thermostat) publishState(ctx context.Context, out io.Writer, conn link.Link) error {
	payload, err := json.Marshal(State{Setpoint: t.setpoint, Heating: t.temperature < t.setpoint})
	if err != nil {
		return err
	}
	if err := conn.Publish(ctx, t.stateTopic(), true, payload); err != nil {
		return err
	}
	fmt.Fprintf(out, "State: %s\n", payload)
	return nil
}

// obey applies a command; a malformed one is reported and ignored, as a device must not fail on input.
func (t *thermostat) obey(ctx context.Context, out io.Writer, conn link.Link, raw []byte) error {
	sp, err := parseCommand(raw)
	if err != nil {
		fmt.Fprintf(out, "Command ignored: %v\n", err)
		return nil
	}
	t.setpoint = sp
	fmt.Fprintf(out, "Command: set-point %.1f\n", sp)
	return t.publishState(ctx, out, conn)
}

// parseCommand reads {"setpoint": N} with N within the thermostat's range.
func parseCommand(raw []byte) (float64, error) {
	var c Command
	if err := json.Unmarshal(raw, &c); err != nil {
		return 0, fmt.Errorf("not a JSON command: %w", err)
	}
	if c.Setpoint == nil {
		return 0, errors.New(`no "setpoint"`)
	}
	if sp := *c.Setpoint; sp < minSetpoint || sp > maxSetpoint || math.IsNaN(sp) {
		return 0, fmt.Errorf("set-point %g outside %d..%d °C", sp, minSetpoint, maxSetpoint)
	}
	return *c.Setpoint, nil
}
