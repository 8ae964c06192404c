"""A tqdm progress bar as a training callback."""

from __future__ import annotations


class ProgressBar:
    """Shows steps, target probability and area while a mask trains, then each phase that follows."""

    def __init__(self, **tqdm_kwargs):
        self.kwargs = tqdm_kwargs
        self.bar = None

    def on_start(self, info: dict) -> None:
        from tqdm.auto import tqdm

        self._desc = f"explaining {info['target_name']}"
        self.bar = tqdm(total=info["total_steps"], desc=self._desc, leave=False, **self.kwargs)

    def on_step(self, state) -> None:
        if self.bar is not None:
            if state.total_steps > self.bar.total:  # a retried run continues past the first budget
                self.bar.total = state.total_steps
            self.bar.update(state.step - self.bar.n)
            self.bar.set_postfix(p=f"{state.prob:.3f}", area=f"{state.area:.1%}", refresh=False)

    def on_necessary_step(self, state) -> None:
        """The necessary evidence's steps, after the sufficient mask's: said in the bar's description."""
        if self.bar is not None:
            self.bar.set_description(f"{self._desc}: necessary evidence, step {state.step - self.bar.n}",
                                     refresh=False)
            self.bar.set_postfix(p=f"{state.prob:.3f}", removed=f"{state.area:.1%}", refresh=True)

    def on_phase(self, name: str) -> None:
        """Work after (or between) the steps: the bar says what it is, so nothing runs unannounced."""
        if self.bar is not None:
            if self.bar.n < self.bar.total:
                self.bar.total = self.bar.n  # stopped early: these steps are done (a retry's steps add to it)
            self.bar.set_description(f"{self._desc}: {name}", refresh=True)

    def on_end(self, info: dict) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
