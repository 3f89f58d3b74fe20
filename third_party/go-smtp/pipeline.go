package smtp

import (
	"errors"
	"time"
)

// Pipeline is a group of commands written to the server at once and
// answered together (RFC 2920), for a server that offers PIPELINING.
// RSET, MAIL and RCPT may appear anywhere in a group, DATA only last
// (RFC 2920 section 3.1). Build it with Client.Pipeline, add commands,
// then Send it; Send reports each command's outcome separately, so that
// the refusal of one recipient is told apart from the others'.
type Pipeline struct {
	c    *Client
	cmds []pipelined
	err  error // a bad argument: nothing is sent
	data *DataCommand
	buf  [4]pipelined // cmds' first array: RSET, MAIL, RCPT and DATA fit
}

type pipelined struct {
	line    string
	expect  int
	kind    byte   // 'R' RSET, 'M' MAIL, 'T' RCPT TO, 'D' DATA
	rcpt    string // for 'T'
	stuffed bool   // for 'D': DataStuffed rather than Data
}

// Pipeline starts an empty group of commands.
func (c *Client) Pipeline() *Pipeline {
	p := &Pipeline{c: c}
	p.cmds = p.buf[:0]
	return p
}

// Reset adds RSET.
func (p *Pipeline) Reset() {
	p.cmds = append(p.cmds, pipelined{line: "RSET", expect: 250, kind: 'R'})
}

// Mail adds MAIL FROM, as Client.Mail sends it. An invalid argument is
// reported here, and Send then sends nothing.
func (p *Pipeline) Mail(from string, opts *MailOptions) error {
	if err := p.c.hello(); err != nil {
		return p.fail(err)
	}
	line, err := p.c.mailLine(from, opts)
	if err != nil {
		return p.fail(err)
	}
	p.cmds = append(p.cmds, pipelined{line: line, expect: 250, kind: 'M'})
	return nil
}

// Rcpt adds RCPT TO, as Client.Rcpt sends it. An invalid argument is
// reported here, and Send then sends nothing.
func (p *Pipeline) Rcpt(to string, opts *RcptOptions) error {
	line, err := p.c.rcptLine(to, opts)
	if err != nil {
		return p.fail(err)
	}
	p.cmds = append(p.cmds, pipelined{line: line, expect: 25, kind: 'T', rcpt: to})
	return nil
}

// Data adds DATA, which must be the group's last command. If it gets
// its 354, DataCommand is the message's writer, as Client.Data returns.
func (p *Pipeline) Data() {
	p.cmds = append(p.cmds, pipelined{line: "DATA", expect: 354, kind: 'D'})
}

// DataStuffed is Data for a message already dot-stuffed, as
// Client.DataStuffed.
func (p *Pipeline) DataStuffed() {
	p.cmds = append(p.cmds, pipelined{line: "DATA", expect: 354, kind: 'D', stuffed: true})
}

func (p *Pipeline) fail(err error) error {
	if p.err == nil {
		p.err = err
	}
	return err
}

// Send writes the group in one write and reads one reply per command,
// in order. replies[i] is the outcome of the i-th command: nil, or an
// *SMTPError. err is set if the group could not be sent or a reply not
// read (the connection is then out of step and should be closed);
// replies then holds the outcomes read before that. A group of more
// than one command needs a server that offers PIPELINING.
func (p *Pipeline) Send() (replies []error, err error) {
	if p.err != nil {
		return nil, p.err
	}
	c := p.c
	if err := c.hello(); err != nil {
		return nil, err
	}
	if len(p.cmds) > 1 {
		if _, ok := c.ext["PIPELINING"]; !ok {
			return nil, errors.New("smtp: server does not support PIPELINING")
		}
	}
	for i, cmd := range p.cmds {
		if cmd.kind == 'D' && i != len(p.cmds)-1 {
			return nil, errors.New("smtp: DATA must end a pipelined group")
		}
	}

	c.conn.SetDeadline(time.Now().Add(c.CommandTimeout))
	defer c.conn.SetDeadline(time.Time{})

	w := c.text.W
	for _, cmd := range p.cmds {
		w.WriteString(cmd.line)
		w.WriteString("\r\n")
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	replies = make([]error, 0, len(p.cmds))
	for _, cmd := range p.cmds {
		_, _, err := c.readResponse(cmd.expect)
		var smtpErr *SMTPError
		if err != nil && !errors.As(err, &smtpErr) {
			return replies, err
		}
		replies = append(replies, err)
		if err != nil {
			continue
		}
		switch cmd.kind {
		case 'R':
			c.rcpts = nil
		case 'M':
			// A new transaction has started, forget the previous recipients.
			c.rcpts = nil
		case 'T':
			c.rcpts = append(c.rcpts, cmd.rcpt)
		case 'D':
			if cmd.stuffed {
				p.data = &DataCommand{client: c, wc: &stuffedWriter{w: c.text.W, bol: true}}
			} else {
				p.data = &DataCommand{client: c, wc: c.text.DotWriter()}
			}
		}
	}
	return replies, nil
}

// DataCommand is the writer of the message once the group's DATA got its
// 354, and nil otherwise.
func (p *Pipeline) DataCommand() *DataCommand { return p.data }
