"""Password guessing throttled without letting a stranger lock an account.

A plain per-account attempt limit (the old design) stops guessing, but anyone who knows an
email can keep its owner out by failing ten times. Here only *failures* count, and they count
per pair (account, source), so a source that guesses is stopped for that account and nobody
else is:

- `<action>.account_source`: a source (IP) that has failed this many times for an account in
  the window is refused for that account, right password included, until the window ends.
- `<action>.account`: failures on the account from all sources together. Past this line the
  account is under a distributed attack, and every source that has failed on it even once is
  refused; a source that has not failed still gets its answer. The owner signing in from
  their usual place keeps working, while each address of a botnet gets one guess a window.
- `<action>.ip` (an attempt limit, enforced by the caller) stops one source from spraying
  many accounts, and bounds how many guesses race past the check at once.

A success does not reset anything: resetting would let a guesser who also knows one password
interleave it to wipe the record. Counters are fixed windows in the rate-limit store (SQL or
DynamoDB), keyed by hashes, never by the email or address itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from core.kernel.config import Rate, RateLimitSettings
from core.kernel.ratelimit import Limiter, RateLimited, bucket, seconds_left

T = TypeVar("T")


@dataclass(frozen=True)
class LoginThrottle:
    limiter: Limiter
    settings: RateLimitSettings
    action: str  # "login" (the API and the console) or "authorize" (the OAuth page)

    def _rules(self) -> tuple[str, str]:
        return f"{self.action}.account_source", f"{self.action}.account"

    def check(self, account: str, source: str) -> None:
        """Refuse (429) a source that may not try this account now."""
        pair_rule, account_rule = self._rules()
        pair_rate = self.settings.rule(pair_rule)
        account_rate = self.settings.rule(account_rule)
        pair_key = bucket(pair_rule, f"{account}\n{source}")
        failed_here = self.limiter.peek(pair_key, pair_rate) if pair_rate else 0
        if pair_rate and failed_here >= pair_rate.count:
            raise _refused(
                "too many failed sign-ins for this account from your address",
                pair_rule,
                pair_rate,
            )
        if account_rate and failed_here:
            failed_everywhere = self.limiter.peek(bucket(account_rule, account), account_rate)
            if failed_everywhere >= account_rate.count:
                raise _refused(
                    "this account is receiving many failed sign-ins; addresses that failed "
                    "are paused",
                    account_rule,
                    account_rate,
                )

    def failed(self, account: str, source: str) -> None:
        pair_rule, account_rule = self._rules()
        for rule, subject in ((pair_rule, f"{account}\n{source}"), (account_rule, account)):
            rate = self.settings.rule(rule)
            if rate is not None:
                self.limiter.hit(bucket(rule, subject), rate)

    def attempt(self, account: str, source: str, sign_in: Callable[[], T | None]) -> T | None:
        """Run `sign_in` (None means wrong credentials) unless this source is paused for the
        account, and count it if it fails."""
        self.check(account, source)
        result = sign_in()
        if result is None:
            self.failed(account, source)
        return result


def _refused(message: str, rule: str, rate: Rate) -> RateLimited:
    wait = seconds_left(rate)
    return RateLimited(
        f"{message}: try again in {wait} s",
        retry_after=wait,
        details={"rule": rule, "limit": rate.count, "window_seconds": rate.seconds},
    )
