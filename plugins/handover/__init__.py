"""The handover area: review requests answered from the DM, nudges and hand-overs."""
