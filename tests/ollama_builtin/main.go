// Runs Ollama's own built-in renderers and parsers (model/renderers, model/parsers, vendored unchanged from Ollama
// at commit fb3076099; see README.md) the way Ollama's server calls them for a chat request
// (server/routes.go, ChatHandler, rendered-chat path):
//
//   - render: renderers.RenderWithRenderer(name, msgs, tools, think), what server/prompt.go renderPrompt calls
//     when the Modelfile names a RENDERER (chatPrompt, with no truncation: the probes fit any context).
//   - parse: parsers.ParserForName(name), then Init(req.Tools, &msgs[len(msgs)-1], req.Think) before the prompt
//     is rendered, then Add(r.Content, r.Done) for each completion response the runner streams (the generated
//     text only: the runner never echoes the prompt); the pieces Add returns are concatenated as a client does.
//
// This file is the only code here that is not Ollama's (or its dependencies').
//
// stdin:  {"jobs": [{"kind": "render", "renderer": "qwen3.5", "messages": [api.Message...], "tools": [api.Tool...],
//
//	"think": true|false|null},
//	{"kind": "parse", "parser": "qwen3.5", "messages": [...], "tools": [...], "think": ...,
//	 "chunks": ["text", ...]}]}
//
// stdout: one JSON object per job, in order: {"prompt": "..."} for render; for parse
// {"whole": result, "stream": result} with result {"content", "thinking", "tool_calls": [{"name", "arguments"}]}:
// "whole" feeds the chunks joined as one response, then the done response; "stream" one response per chunk, then
// the done response (empty content, done=true, as the runner's final response).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/model/parsers"
	"github.com/ollama/ollama/model/renderers"
)

type job struct {
	Kind     string          `json:"kind"`
	Renderer string          `json:"renderer"`
	Parser   string          `json:"parser"`
	Messages []api.Message   `json:"messages"`
	Tools    []api.Tool      `json:"tools"`
	Think    *api.ThinkValue `json:"think"`
	Chunks   []string        `json:"chunks"`
}

type call struct {
	Name      string                        `json:"name"`
	Arguments api.ToolCallFunctionArguments `json:"arguments"`
}

type parsed struct {
	Content   string `json:"content"`
	Thinking  string `json:"thinking"`
	ToolCalls []call `json:"tool_calls"`
}

func parse(j job, chunks []string) (parsed, error) {
	out := parsed{ToolCalls: []call{}}
	p := parsers.ParserForName(j.Parser)
	if p == nil {
		return out, fmt.Errorf("unknown parser %q", j.Parser)
	}
	var last *api.Message
	if len(j.Messages) > 0 {
		last = &j.Messages[len(j.Messages)-1]
	}
	p.Init(j.Tools, last, j.Think)
	var content, thinking strings.Builder
	feed := func(s string, done bool) error {
		c, t, calls, err := p.Add(s, done)
		if err != nil {
			return err
		}
		content.WriteString(c)
		thinking.WriteString(t)
		for _, tc := range calls {
			out.ToolCalls = append(out.ToolCalls, call{Name: tc.Function.Name, Arguments: tc.Function.Arguments})
		}
		return nil
	}
	for _, chunk := range chunks {
		if err := feed(chunk, false); err != nil {
			return out, err
		}
	}
	if err := feed("", true); err != nil {
		return out, err
	}
	out.Content, out.Thinking = content.String(), thinking.String()
	return out, nil
}

func run(j job) (map[string]any, error) {
	switch j.Kind {
	case "render":
		prompt, err := renderers.RenderWithRenderer(j.Renderer, j.Messages, j.Tools, j.Think)
		if err != nil {
			return nil, err
		}
		return map[string]any{"prompt": prompt}, nil
	case "parse":
		whole, err := parse(j, []string{strings.Join(j.Chunks, "")})
		if err != nil {
			return nil, err
		}
		stream, err := parse(j, j.Chunks)
		if err != nil {
			return nil, err
		}
		return map[string]any{"whole": whole, "stream": stream}, nil
	}
	return nil, fmt.Errorf("unknown job kind %q", j.Kind)
}

func main() {
	var in struct {
		Jobs []job `json:"jobs"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	results := make([]map[string]any, 0, len(in.Jobs))
	for k, j := range in.Jobs {
		result, err := run(j)
		if err != nil {
			result = map[string]any{"error": fmt.Sprintf("job %d: %v", k, err)}
		}
		results = append(results, result)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}
