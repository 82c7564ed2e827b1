"""Chat: what kb says in Slack (Block Kit, mrkdwn) and in Mattermost (the same messages' text), and the
work a slash command or a button press starts after its request has been answered.

`blocks` builds messages from the plain data the service layer returns (search results, run views);
`flow` is what a command or press does to a run, off the request thread; `worker` runs that work in
the process and posts its messages to the request's `response_url`.

May import `kb.errors`, `kb.runbooks.transcript` (Slack's escaping), `kb.messages.catalog` (language
names) and `slack_sdk`; never Flask or `kb.web`, whose chat endpoint (`kb/web/chat.py`) verifies
requests and hands work to this package. The service layer arrives as an argument.
"""
