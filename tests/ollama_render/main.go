// Renders Ollama Modelfile TEMPLATEs the way Ollama's template package executes them for chat
// requests (Ollama v0.33.0-rc2, template/template.go: Parse with missingkey=zero and its FuncMap; Execute:
// collate, then the template over System, Messages, Tools, Response, Think, ThinkLevel, IsThinkSet, with
// messages and tools converted to its templateMessage / templateTool types). The types below carry the
// fields and JSON forms of those types and of api.ToolProperty / api.PropertyType, so `json`, ranges over
// arguments and properties (Go maps: sorted keys) and `.Function.Name` behave as in Ollama.
// Used by tests/test_export.py and tests/test_serving_native.py.
//
// stdin: {"template": "...", "jobs": [{"messages": [{"role", "content", "thinking", "tool_calls"}], "tools": [...],
//          "think": bool, "is_think_set": bool}]}
// stdout: a JSON list with the rendered prompt of each job.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"
	"time"
)

// PropertyType is api.PropertyType: one type marshals as a string, several as a list.
type PropertyType []string

func (pt *PropertyType) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		*pt = []string{s}
		return nil
	}
	var a []string
	if err := json.Unmarshal(data, &a); err != nil {
		return err
	}
	*pt = a
	return nil
}

func (pt PropertyType) MarshalJSON() ([]byte, error) {
	if len(pt) == 1 {
		return json.Marshal(pt[0])
	}
	return json.Marshal([]string(pt))
}

// ToolProperty is api.ToolProperty (nested properties left out: the probes have none).
type ToolProperty struct {
	AnyOf       []ToolProperty `json:"anyOf,omitempty"`
	Type        PropertyType   `json:"type,omitempty"`
	Items       any            `json:"items,omitempty"`
	Description string         `json:"description,omitempty"`
	Enum        []any          `json:"enum,omitempty"`
	Required    []string       `json:"required,omitempty"`
}

type templateProperties map[string]ToolProperty

func (t templateProperties) String() string {
	if t == nil {
		return "{}"
	}
	b, _ := json.Marshal(t)
	return string(b)
}

type templateArgs map[string]any

func (t templateArgs) String() string {
	if t == nil {
		return "{}"
	}
	b, _ := json.Marshal(t)
	return string(b)
}

type templateToolFunctionParameters struct {
	Type       string             `json:"type"`
	Defs       any                `json:"$defs,omitempty"`
	Items      any                `json:"items,omitempty"`
	Required   []string           `json:"required,omitempty"`
	Properties templateProperties `json:"properties"`
}

type templateToolFunction struct {
	Name        string                         `json:"name"`
	Description string                         `json:"description"`
	Parameters  templateToolFunctionParameters `json:"parameters"`
}

type templateTool struct {
	Type     string               `json:"type"`
	Items    any                  `json:"items,omitempty"`
	Function templateToolFunction `json:"function"`
}

type templateTools []templateTool

func (t templateTools) String() string {
	b, _ := json.Marshal(t)
	return string(b)
}

type templateToolCallFunction struct {
	Index     int
	Name      string
	Arguments templateArgs
}

type templateToolCall struct {
	ID       string
	Function templateToolCallFunction
}

type templateMessage struct {
	Role       string
	Content    string
	Thinking   string
	ToolCalls  []templateToolCall
	ToolName   string
	ToolCallID string
}

// input shapes (OpenAI / Ollama API JSON)
type inCall struct {
	Function struct {
		Name      string         `json:"name"`
		Arguments map[string]any `json:"arguments"`
	} `json:"function"`
}

type inMessage struct {
	Role      string   `json:"role"`
	Content   string   `json:"content"`
	Thinking  string   `json:"thinking"`
	ToolCalls []inCall `json:"tool_calls"`
	ToolName  string   `json:"tool_name"`
}

type inTool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		Parameters  struct {
			Type       string                  `json:"type"`
			Required   []string                `json:"required"`
			Properties map[string]ToolProperty `json:"properties"`
		} `json:"parameters"`
	} `json:"function"`
}

type job struct {
	Messages   []inMessage `json:"messages"`
	Tools      []inTool    `json:"tools"`
	Think      bool        `json:"think"`
	IsThinkSet bool        `json:"is_think_set"`
}

type input struct {
	Template string `json:"template"`
	Jobs     []job  `json:"jobs"`
}

// collate merges consecutive messages of one role (tool messages excepted) and collects the system
// messages, as Ollama's template.collate does.
func collate(msgs []inMessage) (string, []*templateMessage) {
	var system []string
	var collated []*templateMessage
	for _, msg := range msgs {
		if msg.Role == "system" {
			system = append(system, msg.Content)
		}
		if len(collated) > 0 && collated[len(collated)-1].Role == msg.Role && msg.Role != "tool" {
			collated[len(collated)-1].Content += "\n\n" + msg.Content
			continue
		}
		m := &templateMessage{Role: msg.Role, Content: msg.Content, Thinking: msg.Thinking, ToolName: msg.ToolName}
		for i, c := range msg.ToolCalls {
			m.ToolCalls = append(m.ToolCalls, templateToolCall{Function: templateToolCallFunction{
				Index: i, Name: c.Function.Name, Arguments: templateArgs(c.Function.Arguments)}})
		}
		collated = append(collated, m)
	}
	return strings.Join(system, "\n\n"), collated
}

func tools(in []inTool) templateTools {
	if in == nil {
		return nil
	}
	out := make(templateTools, len(in))
	for i, t := range in {
		out[i] = templateTool{Type: t.Type, Function: templateToolFunction{
			Name: t.Function.Name, Description: t.Function.Description,
			Parameters: templateToolFunctionParameters{Type: t.Function.Parameters.Type,
				Required: t.Function.Parameters.Required, Properties: templateProperties(t.Function.Parameters.Properties)}}}
	}
	return out
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "bad input:", err)
		os.Exit(2)
	}
	funcs := template.FuncMap{
		"json":             func(v any) string { b, _ := json.Marshal(v); return string(b) },
		"currentDate":      func(args ...string) string { return time.Now().Format("2006-01-02") },
		"yesterdayDate":    func(args ...string) string { return time.Now().AddDate(0, 0, -1).Format("2006-01-02") },
		"toTypeScriptType": func(v any) string { return "any" },
	}
	tmpl, err := template.New("").Option("missingkey=zero").Funcs(funcs).Parse(in.Template)
	if err != nil {
		fmt.Fprintln(os.Stderr, "template:", err)
		os.Exit(3)
	}
	out := []string{}
	for _, j := range in.Jobs {
		system, messages := collate(j.Messages)
		var b strings.Builder
		err := tmpl.Execute(&b, map[string]any{
			"System": system, "Messages": messages, "Tools": tools(j.Tools), "Response": "",
			"Think": j.Think, "ThinkLevel": "", "IsThinkSet": j.IsThinkSet,
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "execute:", err)
			os.Exit(4)
		}
		out = append(out, b.String())
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
