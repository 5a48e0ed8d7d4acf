"""Asking another context a question from inside a call, and waiting for its answer.

The request-and-reply behind dispatch.ask_caller (a service the caller
registered with Context.serve) and the resource reader's requests to the
controller. Not in the boot payload: it travels when first needed.
"""
from __future__ import absolute_import

from transport.core import codec
from transport.core.compat import Event
from transport.core.dispatch import AskError
from transport.core.framing import Message


def ask(router, dst, handle, value, timeout, who):
    """Send value to `handle` in context dst and wait for its ('ok', answer) reply.

    Returns the answer; raises AskError when the reply refuses (its text), dst is
    lost, or timeout passes. who names dst in those errors.
    """
    if router.forked():
        raise AskError('%s cannot be asked from a forked process' % (who,))
    answers = []
    done = Event()

    def on_answer(msg):
        answers.append(msg)
        done.set()

    reply_to = router.add_reply_handler(on_answer, dst)
    router.send(Message(dst, router.context_id, handle, codec.encode(value), reply_to=reply_to))
    if not done.wait(timeout):
        router.remove_handler(reply_to)
        raise AskError('no answer from %s within %ss' % (who, timeout))
    msg = answers[0]
    if msg.is_dead:
        raise AskError('%s is gone: %s' % (who, msg.data.decode('utf-8', 'replace')))
    status, answer = codec.decode(msg.data)
    if status != 'ok':
        raise AskError(answer)
    return answer
