//! The web console of `custos serve`: where approvers sign in and decide held calls, and
//! security reviews agents, runs and calls.
