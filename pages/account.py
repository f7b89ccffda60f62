"""Account: who you are, how much you have analysed, forms to edit your profile and password, and your
data: all of it as one ZIP file, or the account deleted with everything in it."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from pages.common import FAREWELL_KEY, client_id, counted, md_escape, renew_session, require_user, show_error, store
from studio import auth, takeout
from studio.store import User

FLASH_KEY = "account_flash"  # session_state: a success message that survives the rerun after a change


def details(user: User, counts: dict[str, int]) -> None:
    """Name, email, username, member since, and counts per kind of analysis (Store.count_analyses)."""
    member_since = datetime.fromisoformat(user.created_at).strftime("%d %B %Y")
    for label, value in (("Name", user.name), ("Email", user.email), ("Username", user.username)):
        st.markdown(f"**{label}:** {md_escape(value)}")
    st.markdown(f"**Member since:** {member_since}")
    labels = (("photo", "Photos"), ("snapshot", "Webcam snapshots"), ("video", "Videos"), ("total", "Total"))
    for column, (key, label) in zip(st.columns(4), labels, strict=True):
        column.metric(label, counts[key])


def profile_form(user: User) -> None:
    """Edit name and email."""
    with st.form("profile_form"):
        st.subheader("Edit profile")
        name = st.text_input("Name", value=user.name, key="profile_name")
        email = st.text_input("Email", value=user.email, key="profile_email")
        submitted = st.form_submit_button("Save profile")
    if submitted:
        try:
            st.session_state["user"] = auth.update_profile(store(), user, name=name, email=email)
        except auth.AuthError as error:
            show_error(str(error))
            return
        st.session_state[FLASH_KEY] = "Profile saved."
        st.rerun()


def password_form(user: User) -> None:
    """Change the password (the current one is required)."""
    with st.form("password_form", clear_on_submit=True):
        st.subheader("Change password")
        current = st.text_input("Current password", type="password", key="password_current")
        new = st.text_input(
            "New password",
            type="password",
            key="password_new",
            help=f"At least {auth.MIN_PASSWORD_LENGTH} characters, with a letter and a digit; common or easily "
            "guessed passwords are refused. Changing it logs out every other session of this account.",
        )
        repeat = st.text_input("Repeat new password", type="password", key="password_repeat")
        submitted = st.form_submit_button("Change password")
    if submitted:
        try:
            auth.change_password(store(), user, current=current, new=new, repeat=repeat, client=client_id())
        except auth.AuthError as error:
            show_error(str(error))
            return
        renew_session(user)  # every other session and earlier cookie is revoked; this one goes on
        st.session_state[FLASH_KEY] = "Password changed. Other sessions of this account have been logged out."
        st.rerun()


def your_data(user: User, analyses: int) -> None:
    """Download everything kept about you; delete the account with it (password and username typed)."""
    st.subheader("Your data")
    st.download_button(
        "Download all my data (ZIP)",
        lambda: takeout.export_zip(store(), user),  # built when clicked, not on every visit
        file_name=takeout.export_filename(user),
        mime="application/zip",
        key="takeout_download",
        on_click="ignore",
        help="Your profile, and every saved analysis: its JSON report, the annotated picture or video, a "
        "video's per-frame results and any Grad-CAM you kept.",
    )
    total = counted(analyses, "analysis", "analyses")
    with st.expander("Delete my account"):
        with st.form("delete_account_form", clear_on_submit=True):
            st.warning(
                f"This deletes your account and everything saved with it ({total}, their pictures "
                "and videos), for good, and logs you out everywhere. Download your data first to keep a copy."
            )
            password = st.text_input("Password", type="password", key="delete_password")
            confirmation = st.text_input(f"Type your username, {user.username}, to confirm", key="delete_confirm")
            submitted = st.form_submit_button("Delete my account", type="primary")
        if not submitted:
            return
        try:
            deleted = auth.delete_account(
                store(), user, password=password, confirmation=confirmation, client=client_id()
            )
        except auth.AuthError as error:
            show_error(str(error))  # under the form, where the user is looking
            return
    gone = counted(deleted, "analysis", "analyses")
    st.session_state[FAREWELL_KEY] = f"Your account {user.username} and its {gone} were deleted."
    st.rerun()  # the account is gone: app.py ends this session and shows the login page


def main() -> None:
    """The account page."""
    user = require_user()
    st.title("Account")
    flash = st.session_state.pop(FLASH_KEY, None)
    if flash:
        st.success(flash)
    counts = store().count_analyses(user.id)
    details(user, counts)
    left, right = st.columns(2)
    with left:
        profile_form(user)
    with right:
        password_form(user)
    your_data(user, counts["total"])


main()
