package main

import (
	"fmt"
	"strings"

	"github.com/cpuguy83/go-md2man/v2/md2man"
	"github.com/urfave/cli/v2"
)

func init() {
	extraCommands = append(extraCommands, manCommand(), completionCommand())
}

func manCommand() *cli.Command {
	return &cli.Command{
		Name:      "man",
		Usage:     "print graceshim's man page (roff), generated from its flags and commands",
		UsageText: "graceshim man > graceshim.1 && man -l graceshim.1",
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageErrorf("man takes no arguments, got %q", c.Args().First())
			}
			page, err := manPage(c.App)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(c.App.Writer, page)
			return err
		},
	}
}

// manPage renders the man page from the CLI definition: urfave/cli's
// markdown of the flags and commands, with the sections it has no place
// for (exit status, environment), turned into roff by go-md2man.
func manPage(app *cli.App) (string, error) {
	md, err := app.ToMarkdown()
	if err != nil {
		return "", fmt.Errorf("cannot render the man page: %w", err)
	}
	var b strings.Builder
	b.WriteString(`% graceshim 1 "" "graceshim ` + app.Version + `"` + "\n")
	b.WriteString(md)
	b.WriteString("\n# EXIT STATUS\n\n")
	for _, line := range strings.Split(strings.TrimSpace(exitCodesHelp), "\n")[1:] {
		line = strings.TrimSpace(line)
		code, text, _ := strings.Cut(line, " ")
		if strings.Trim(code, "0123456789") != "" {
			b.WriteString(line + "\n\n") // a sentence, not a code
			continue
		}
		fmt.Fprintf(&b, "**%s**: %s\n\n", code, strings.TrimSpace(text))
	}
	b.WriteString("**graceshim demo**: 0 when every download completed (with --compare: when the demo ran), " +
		"1 when a download was lost, 125 when the demo could not run, 130 when interrupted.\n\n")
	b.WriteString("# ENVIRONMENT\n\n")
	b.WriteString("Each global option can also be set as GRACESHIM_NAME, its name in capitals with - as _: ")
	var env []string
	for _, f := range runFlags() {
		env = append(env, "**GRACESHIM_"+strings.ToUpper(strings.ReplaceAll(f.Names()[0], "-", "_"))+"**")
	}
	b.WriteString(strings.Join(env, ", ") + ". A flag on the command line wins.\n\n")
	b.WriteString("**NOTIFY_SOCKET** is where graceshim tells systemd READY=1, STOPPING=1, STATUS= and EXTEND_TIMEOUT_USEC=; " +
		"it is removed from the command's environment.\n\n")
	b.WriteString("# EXAMPLES\n\n")
	b.WriteString("    graceshim demo\n\nStops a built-in slow server while downloads are in flight and shows the drain.\n\n")
	b.WriteString("    graceshim unit -- /usr/sbin/nginx -g 'daemon off;' > /etc/systemd/system/nginx.service\n\n" +
		"Prints a unit that runs nginx under graceshim (Type=notify, KillMode=mixed).\n\n")
	b.WriteString("    graceshim lint /lib/systemd/system/nginx.service\n\nExplains what goes wrong when the unit stops, and the fix.\n\n")
	b.WriteString("    graceshim initscript fix --check /etc/init.d/nginx\n\nTells whether a SysV script's stop cuts requests.\n\n")
	b.WriteString("# SEE ALSO\n\nsystemd.service(5), systemd.kill(5), sd_notify(3), systemctl(1)\n")
	return string(md2man.Render([]byte(b.String()))), nil
}

func completionCommand() *cli.Command {
	script := func(name, text string) *cli.Command {
		return &cli.Command{
			Name:  name,
			Usage: "print the " + name + " completion script",
			Action: func(c *cli.Context) error {
				_, err := fmt.Fprint(c.App.Writer, text)
				return err
			},
		}
	}
	return &cli.Command{
		Name:  "completion",
		Usage: "print a shell completion script (bash or zsh)",
		UsageText: "source <(graceshim completion bash)\n" +
			"graceshim completion zsh > \"${fpath[1]}/_graceshim\"",
		Subcommands: []*cli.Command{script("bash", bashCompletion), script("zsh", zshCompletion)},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usageErrorf("completion needs a shell: bash or zsh")
			}
			return usageErrorf("completion: unknown shell %q (want bash or zsh)", c.Args().First())
		},
	}
}

// The scripts ask graceshim itself for the candidates: urfave/cli answers
// a command line ending in --generate-bash-completion with the commands
// and flags that fit, and runs nothing else.
const bashCompletion = `# bash completion for graceshim; from: graceshim completion bash
_graceshim() {
	local cur=${COMP_WORDS[COMP_CWORD]}
	local -a words=("${COMP_WORDS[@]:0:COMP_CWORD}")
	local opts
	if [[ $cur == -* ]]; then
		opts=$("${words[@]}" "$cur" --generate-bash-completion 2>/dev/null)
	else
		opts=$("${words[@]}" --generate-bash-completion 2>/dev/null)
	fi
	local IFS=$'\n'
	# shellcheck disable=SC2207 # one candidate a line, split on newlines only
	COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -o bashdefault -o default -F _graceshim graceshim
`

const zshCompletion = `#compdef graceshim
# zsh completion for graceshim; from: graceshim completion zsh
_graceshim() {
	local -a opts
	local cur=${words[-1]}
	if [[ $cur == -* ]]; then
		opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion 2>/dev/null)}")
	else
		opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
	fi
	if [[ -n ${opts[1]} ]]; then
		_describe 'graceshim' opts
	else
		_files
	fi
}
if [[ ${funcstack[1]} == _graceshim ]]; then
	_graceshim "$@"
else
	compdef _graceshim graceshim
fi
`
