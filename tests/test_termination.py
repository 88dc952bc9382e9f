import signal

import pytest

from camlit.termination import SigtermWatch, Terminated, exit_terminated, interrupt_as_sigterm


def test_the_first_ctrl_c_takes_sigterms_path_and_a_second_stops_at_once():
    watch = SigtermWatch()
    watch.defer()  # training has begun: the stop waits for the end of the batch
    seen = []

    def lightning_and_watch(signum, frame):
        seen.append(signum)
        watch(signum, frame)

    previous = signal.signal(signal.SIGTERM, lightning_and_watch)
    try:
        handler = interrupt_as_sigterm(watch)
        handler(signal.SIGINT, None)
        # Passed on as SIGTERM (Lightning forwards the number to a DDP run's other processes),
        # and remembered as SIGINT for the exit line.
        assert seen == [signal.SIGTERM] and watch.received and watch.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGINT, None)
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
        watch.restore()


def test_ctrl_c_before_training_stops_at_once_and_says_sigint(capsys):
    watch = SigtermWatch()
    previous = signal.signal(signal.SIGTERM, watch)
    try:
        with pytest.raises(Terminated):
            interrupt_as_sigterm(watch)(signal.SIGINT, None)
    finally:
        signal.signal(signal.SIGTERM, previous)
        watch.restore()
    with pytest.raises(SystemExit) as stop:
        exit_terminated("nothing trained", watch.signum)
    assert stop.value.code == 130 and capsys.readouterr().err == "stopped by SIGINT: nothing trained\n"
